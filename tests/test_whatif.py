"""``aiops what-if`` on a really recorded window: real dev server, worker and PostgreSQL.

An agent in semi_auto decides real events: one low action runs on its own, a medium one is
approved, another medium one rejected, a critical one rejected, a high one approved, and one
event is filtered. A candidate raising the agent to full_auto must show exactly the two medium
actions as running without approval (one of which people had rejected), and nothing else: the
critical action still needs two approvals, the high one still one, as the policy says.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from agents.registry import register_agent
from aiops.cli import app
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import AutomationLevel, RiskLevel
from aiops.whatif import Verdict, WhatIfReport
from tests.helpers import agent_config, event, eventually, team, wait_pending
from tests.support.agents_for_tests import TunableAgent
from tests.support.postgres_server import PostgresServer

RUNNER = CliRunner()


async def record_a_window(aiops: AiopsClient) -> tuple[AgentConfig, dict[str, str]]:
    """Run the agent through real events; return its config and the action ids by name."""
    config = agent_config("scripted", approval=team())
    await aiops.agents.start(config, started_by="test")
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    risks = {"low": "low", "approved": "medium", "rejected": "medium", "critical": "critical", "high": "high"}
    events = {name: event("alert", risk=risk) for name, risk in risks.items()}
    ignored = event("metric_threshold")  # the scripted agent does not subscribe: filtered
    for e in [*events.values(), ignored]:
        await aiops.events.send(config.id, e)
    ids = {name: aiops.approvals.action_id(config.id, e.id) for name, e in events.items()}
    for name in ("approved", "rejected", "critical", "high"):
        await wait_pending(aiops, ids[name])
    await aiops.approvals.approve(ids["approved"], "alice")
    await aiops.approvals.approve(ids["high"], "bob")
    await aiops.approvals.reject(ids["rejected"], "alice")
    await aiops.approvals.reject(ids["critical"], "bob")
    ended = {ActionStatus.VERIFIED, ActionStatus.SUCCEEDED, ActionStatus.REJECTED}
    for action_id in ids.values():
        await eventually(lambda a=action_id: aiops.approvals.action(a), lambda r: r.status in ended)

    async def audited() -> list[Any]:
        return await aiops.audit.rows(agent_id=config.id, limit=10_000)

    def complete(rows: list[Any]) -> bool:  # every action's end and the filtered event have landed
        finished = {r.action_id for r in rows if r.step == "action_finished"}
        filtered = any(r.detail.get("event_id") == ignored.id for r in rows)
        return finished >= set(ids.values()) and filtered

    await eventually(audited, complete, within=60)
    return config, ids


def full_auto(config: AgentConfig) -> AgentConfig:
    return config.model_copy(update={"automation_level": AutomationLevel.FULL_AUTO})


async def test_full_auto_shows_exactly_which_recorded_actions_would_have_run(
    aiops: AiopsClient, worker
) -> None:
    config, ids = await record_a_window(aiops)
    rows_before = len(await aiops.audit.rows(agent_id=config.id, limit=10_000))

    report = await aiops.config.what_if(full_auto(config))

    assert report.source == "audit_log" and report.chain_linked and report.actions == 5
    changed = {d.action_id: d for d in report.changed_decisions}
    assert set(changed) == {ids["approved"], ids["rejected"]}
    for name in ("approved", "rejected"):
        d = changed[ids[name]]
        assert (d.recorded.verdict, d.candidate.verdict) == (Verdict.APPROVAL, Verdict.RUN)
        assert d.recorded.allowed_roles == ["sre", "admin"] and d.recorded.required_approvals == 1
    assert changed[ids["approved"]].recorded_status == ActionStatus.VERIFIED.value
    assert changed[ids["rejected"]].recorded_status == ActionStatus.REJECTED.value
    counts = {c.verdict: (c.recorded, c.candidate) for c in report.summary}
    assert counts[Verdict.RUN] == (1, 3) and counts[Verdict.APPROVAL] == (4, 2)
    assert report.events.filtered_recorded == 1 == report.events.filtered_candidate
    assert report.events.now_filtered == 0 == report.events.no_longer_filtered
    assert "does not declare pure decisions" in report.proposals_note
    # Read-only: the audit chain did not grow, and nothing new was proposed.
    assert len(await aiops.audit.rows(agent_id=config.id, limit=10_000)) == rows_before
    status = await aiops.agents.status(config.id)
    assert status.counters.actions_proposed == 5

    # The critical action still needs two approvals under the candidate, as the policy says.
    same = await aiops.config.what_if(config)
    assert same.changed == 0 and same.changed_decisions == []
    stricter = config.model_copy(
        update={"approval": team().model_copy(update={"deny_at_or_above": RiskLevel.HIGH})}
    )
    denied = await aiops.config.what_if(stricter)
    assert {d.action_id for d in denied.changed_decisions} == {ids["critical"], ids["high"]}
    assert all(d.candidate.verdict == Verdict.DENY for d in denied.changed_decisions)


async def test_rate_limit_and_filter_in_the_candidate(aiops: AiopsClient, worker) -> None:
    config, ids = await record_a_window(aiops)
    limited = full_auto(config).model_copy(
        update={"approval": team().model_copy(update={"max_auto_executions": 1})}
    )
    report = await aiops.config.what_if(limited)
    changed = {d.action_id: d.candidate.verdict for d in report.changed_decisions}
    recorded = {ids["low"]: Verdict.RUN}  # the others waited for approval then
    verdicts = {name: changed.get(a, recorded.get(a, Verdict.APPROVAL)) for name, a in ids.items()}
    # One automatic execution per hour: of the three the candidate would run on its own, the
    # first judged (in the order the decisions were recorded) runs, the other two are limited.
    auto = [verdicts[n] for n in ("low", "approved", "rejected")]
    assert sorted(auto) == sorted([Verdict.RUN, Verdict.RATE_LIMITED, Verdict.RATE_LIMITED])
    assert verdicts["critical"] == verdicts["high"] == Verdict.APPROVAL
    counts = {c.verdict: c.candidate for c in report.summary}
    assert (counts[Verdict.RUN], counts[Verdict.RATE_LIMITED]) == (1, 2)


async def test_the_cli_prints_the_table_and_the_json(
    aiops: AiopsClient, worker, postgres: PostgresServer, address: str, task_queue: str, tmp_path: Path
) -> None:
    config, ids = await record_a_window(aiops)
    path = tmp_path / "candidate.json"
    path.write_text(full_auto(config).model_dump_json())
    env = {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_PROFILE": None,
        "DATABASE_URL": postgres.url,
        "AIOPS_TASK_QUEUE": task_queue,
        "COLUMNS": "250",
    }

    def cli(*args: str) -> Any:
        return asyncio.to_thread(RUNNER.invoke, app, list(args), env=env)

    as_json = await cli("-o", "json", "what-if", config.id, "--config", str(path), "--since", "1h")
    assert as_json.exit_code == 0, as_json.stderr
    report = WhatIfReport.model_validate(json.loads(as_json.stdout))
    assert {d.action_id for d in report.changed_decisions} == {ids["approved"], ids["rejected"]}
    assert "audit rows read" in as_json.stderr  # progress goes to stderr, never into the JSON

    text = await cli("what-if", config.id, "--config", str(path))
    assert text.exit_code == 0, text.stderr
    assert "Changed decisions: 2" in text.stdout and ids["rejected"] in text.stdout

    wrong = await cli("what-if", "someone-else", "--config", str(path))
    assert wrong.exit_code == 2 and "not 'someone-else'" in wrong.stderr


@register_agent("tunable-pure")
class PureTunable(TunableAgent):
    """The tunable test agent, declaring what it is: its hook reads only the event and settings."""

    pure_decisions = True


async def test_a_pure_hook_is_re_run_with_the_candidates_settings(aiops: AiopsClient, worker) -> None:
    config = agent_config("tunable-pure", settings={"mode": "observe"})
    await aiops.agents.start(config, started_by="test")
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    sent = [event("alert") for _ in range(3)]
    for e in sent:
        await aiops.events.send(config.id, e)

    async def audited() -> int:
        rows = await aiops.audit.rows(agent_id=config.id, limit=1000)
        return sum(
            r.step == "event_received" and r.detail.get("event_id") in {e.id for e in sent} for r in rows
        )

    await eventually(audited, lambda n: n == 3)
    acting = config.model_copy(update={"settings": {"mode": "act"}})

    report = await aiops.config.what_if(acting)

    assert report.proposals == "rerun" and report.rerun_events == 3, report.proposals_note
    changed = {d.event_id: d for d in report.changed_decisions}
    assert set(changed) == {e.id for e in sent}
    for d in changed.values():
        assert (d.recorded.verdict, d.candidate.verdict, d.risk) == (Verdict.NOT_PROPOSED, Verdict.RUN, "low")
    assert (await aiops.agents.status(config.id)).counters.actions_proposed == 0  # nothing started

    same = await aiops.config.what_if(config)
    assert same.proposals == "rerun" and same.changed == 0
