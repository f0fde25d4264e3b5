"""The state continue-as-new carries and the status answer stay under their budgets."""

from __future__ import annotations

from datetime import UTC, datetime

from aiops.contracts.agent import (
    AgentRunState,
    PendingAction,
    RecentProblem,
)
from aiops.contracts.budgets import json_size
from aiops.contracts.incidents import Incident, IncidentAlert
from aiops.contracts.models import RiskLevel, Severity, SystemEvent
from tests.helpers import agent_config
from workflows.agent.carried import KEEP_PROBLEMS, bound_status, fit_carried
from workflows.agent.state import status_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _state(ids: int = 0, id_length: int = 200, problems: int = 20, queue: int = 0) -> AgentRunState:
    state = AgentRunState(config=agent_config("recorder"))
    state.seen_event_ids = [f"{i:08d}" + "x" * (id_length - 8) for i in range(ids)]
    state.recent_errors = [RecentProblem(at=NOW, message="m" * 1000) for _ in range(problems)]
    state.queue = [
        SystemEvent(id=f"q{i}", type="alert", source="s", data={"p": "y" * 900}) for i in range(queue)
    ]
    return state


def test_a_small_state_is_carried_whole() -> None:
    state = _state(ids=100)
    before = state.model_dump()
    measured, shed = fit_carried(state)
    assert measured.fits and shed == [] and state.model_dump() == before


def test_problems_go_first_then_the_oldest_event_ids() -> None:
    state = _state(ids=8000, id_length=256)  # about 2.1 MB of event ids
    newest = state.seen_event_ids[-1]
    measured, shed = fit_carried(state)
    assert measured.fits, measured.reason
    assert len(state.recent_errors) == KEEP_PROBLEMS
    assert "recent problems" in shed[0]
    assert any("oldest event ids of the dedup window" in s for s in shed)
    assert state.seen_event_ids[-1] == newest and 2000 <= len(state.seen_event_ids) < 8000
    assert all("over its budget" in s for s in shed)


def test_queue_and_pending_actions_are_never_shed() -> None:
    state = _state(queue=1800)  # about 1.7 MB of queued events
    state.pending_actions = {
        f"a{i}": PendingAction(
            action_id=f"a{i}", event_id=f"e{i}", status="proposed", risk_level=RiskLevel.LOW,
            description="d", proposed_at=NOW,
        )
        for i in range(10)
    }  # fmt: skip
    measured, _ = fit_carried(state)
    assert not measured.fits  # continue-as-new waits: the next batches shrink the queue
    assert len(state.queue) == 1800 and len(state.pending_actions) == 10
    assert "the state continue-as-new carries is" in measured.reason


def test_resolved_samples_go_before_the_dedup_window() -> None:
    state = _state(ids=10)
    alerts = {
        f"f{i}": IncidentAlert(
            event_id=f"e{i}", fingerprint=f"f{i}", source="s" * 100, severity=Severity.HIGH,
            status="resolved" if i % 2 else "firing", summary="z" * 200, at=NOW,
        )
        for i in range(50)
    }  # fmt: skip
    for n in range(100):
        state.incidents[f"k{n}"] = Incident(
            key=f"k{n}", number=n, opened_at=NOW, decide_at=NOW, alerts=dict(alerts)
        )
    measured, shed = fit_carried(state)
    assert measured.fits, measured.reason
    assert any("resolved alert samples" in s for s in shed)
    firing = sum(a.status == "firing" for i in state.incidents.values() for a in i.alerts.values())
    assert firing == 100 * 25  # no firing sample is shed
    assert len(state.seen_event_ids) == 10


def test_status_is_cut_with_a_reason_when_over_budget() -> None:
    state = _state()
    state.pending_actions = {
        f"a{i}": PendingAction(
            action_id=f"a{i}", event_id=f"e{i}", status="proposed", risk_level=RiskLevel.LOW,
            description="d" * 200, proposed_at=NOW,
        )
        for i in range(1000)
    }  # fmt: skip
    whole = status_of(state)
    assert bound_status(whole) is whole  # 1,000 pending actions fit
    cut = bound_status(whole, budget=50_000)
    assert len(cut.pending_actions) == 100 and cut.pending_actions[-1].action_id == "a999"
    assert cut.truncated is not None and "of 1000 pending actions" in cut.truncated
    assert json_size(cut) < json_size(whole)
