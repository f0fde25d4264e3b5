"""The what-if simulation fed rows directly: breaker, rate limit, filter, grouping, quorum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiops.contracts.config import AgentConfig, ApprovalRule, ApprovalSettings, RuntimeSettings
from aiops.contracts.models import AutomationLevel, RiskLevel
from aiops.whatif import Verdict, WhatIfReport
from aiops.whatif.simulate import Simulation

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def config(**fields: Any) -> AgentConfig:
    return AgentConfig(id="a1", name="a", type="scripted", **fields)


def decision(n: int, risk: str = "low", outcome: str = "auto_execute", **extra: Any) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "reason": "recorded",
        "required_approvals": 0 if outcome == "auto_execute" else 1,
        "allowed_roles": [] if outcome == "auto_execute" else ["sre", "admin"],
        "risk_level": risk,
        "description": f"action {n}",
        "event_id": f"e{n}",
        "event_type": "alert",
        "correlation_id": None,
        **extra,
    }


def feed(sim: Simulation, n: int, status: str | None = None, **detail: Any) -> None:
    at = T0 + timedelta(minutes=n)
    sim.feed("decision", f"act-{n}", decision(n, **detail), at)
    if status is not None:
        sim.feed("action_finished", f"act-{n}", {"status": status}, at + timedelta(seconds=10))


def report(sim: Simulation) -> WhatIfReport:
    return sim.report(
        WhatIfReport(agent_id="a1", agent_type="scripted", candidate_version=0, since=None, until=None)
    )


def test_the_breaker_opens_after_failures_that_ran_in_both_worlds_and_a_reset_closes_it() -> None:
    sim = Simulation(config(approval=ApprovalSettings(circuit_breaker_failures=2)), {"alert"})
    feed(sim, 1, "failed")
    feed(sim, 2, "failed")
    feed(sim, 3, "verified")  # the breaker is open now: this one would wait for a person
    sim.feed("agent_lifecycle", None, {"state": "circuit_breaker_reset"}, T0 + timedelta(minutes=4))
    feed(sim, 5, "verified")
    changed = {d.action_id: d.candidate.verdict for d in report(sim).changed_decisions}
    assert changed == {"act-3": Verdict.CIRCUIT_OPEN}


def test_an_action_people_rejected_does_not_move_the_breaker() -> None:
    sim = Simulation(
        config(
            automation_level=AutomationLevel.FULL_AUTO, approval=ApprovalSettings(circuit_breaker_failures=1)
        ),
        {"alert"},
    )
    feed(sim, 1, "rejected", risk="medium", outcome="require_approval")
    feed(sim, 2, "verified")
    r = report(sim)
    assert [(d.action_id, d.candidate.verdict) for d in r.changed_decisions] == [("act-1", Verdict.RUN)]


def test_the_rate_limit_counts_the_candidates_own_automatic_runs() -> None:
    sim = Simulation(
        config(approval=ApprovalSettings(max_auto_executions=2, auto_execution_window_seconds=600)), {"alert"}
    )
    for n in range(4):
        feed(sim, n, "verified")
    feed(sim, 20, "verified")  # the window has passed: runs again
    changed = [(d.action_id, d.candidate.verdict) for d in report(sim).changed_decisions]
    assert changed == [("act-2", Verdict.RATE_LIMITED), ("act-3", Verdict.RATE_LIMITED)]


def test_a_new_quorum_is_a_change_and_filtered_or_grouped_events_are_named() -> None:
    rules = {RiskLevel.MEDIUM: ApprovalRule(roles=["admin"], required_approvals=2)}
    sim = Simulation(
        config(
            approval=ApprovalSettings(rules=rules),
            runtime=RuntimeSettings(incident_window_seconds=60),
        ),
        {"infrastructure_drift"},
    )
    feed(sim, 1, risk="medium", outcome="require_approval")
    sim.subscribed = {"alert"}
    feed(sim, 2, risk="medium", outcome="require_approval")
    feed(sim, 3, risk="low", correlation_id="group-1")
    verdicts = {d.action_id: d.candidate for d in report(sim).changed_decisions}
    assert verdicts["act-1"].verdict == Verdict.FILTERED
    assert (verdicts["act-2"].verdict, verdicts["act-2"].required_approvals) == (Verdict.APPROVAL, 2)
    assert verdicts["act-2"].allowed_roles == ["admin"]
    assert verdicts["act-3"].verdict == Verdict.GROUPED


def test_events_filtered_and_grouped_then_and_now() -> None:
    sim = Simulation(config(runtime=RuntimeSettings(incident_window_seconds=60)), {"alert"})
    row = {"event_id": "e1", "type": "alert", "correlation_id": "k", "config_version": 3}
    sim.feed("event_received", None, row, T0)
    sim.feed("event_received", None, {**row, "event_id": "e2"}, T0 + timedelta(seconds=30))
    sim.feed("event_received", None, {**row, "event_id": "e3"}, T0 + timedelta(seconds=90))
    sim.feed(
        "event_received", None, {**row, "event_id": "e4", "type": "metric_threshold", "filtered": "x"}, T0
    )
    sim.feed("event_received", None, {**row, "event_id": "e5", "incident": "k", "correlation_id": None}, T0)
    sim.feed("event_received", None, {**row, "event_id": "e6", "decision_error": "boom"}, T0)
    ev = report(sim).events
    assert (ev.events, ev.decision_errors) == (5, 1)
    assert (ev.filtered_recorded, ev.filtered_candidate, ev.now_filtered) == (1, 1, 0)
    assert (ev.grouped_recorded, ev.grouped_candidate, ev.now_grouped, ev.no_longer_grouped) == (1, 3, 3, 1)
    assert ev.incidents_candidate == 2  # e1 opens one; e3 comes after its window
    assert report(sim).recorded_config_versions == [3]


def test_rows_not_written_by_the_framework_are_counted_and_skipped() -> None:
    sim = Simulation(config(), {"alert"})
    sim.feed("decision", "act-1", decision(1, required_approvals="many"), T0)
    sim.feed("event_received", None, {"event_id": "e1", "type": "no-such-type", "correlation_id": 5}, T0)
    sim.feed("action_finished", "act-1", {"status": ["odd"]}, T0)
    feed(sim, 2, "verified")
    r = report(sim)
    assert r.actions == 1 and any("were skipped" in n for n in r.notes)
