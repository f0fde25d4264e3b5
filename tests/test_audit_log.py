"""The audit log against the real PostgreSQL: complete, idempotent, tamper-evident, queryable."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from activities.database.audit_log import AuditLog
from aiops.client import AiopsClient, AiopsError
from aiops.contracts.action import ActionStatus, ApprovalRequest
from aiops.contracts.activities import AuditRecord, AuditStep
from tests.helpers import agent_config, event, eventually, start_pending_action, team


def records(agent_id: str, n: int, start: datetime | None = None) -> list[AuditRecord]:
    start = start or datetime.now(UTC)
    return [
        AuditRecord(
            agent_id=agent_id,
            action_id=f"action-{agent_id}:{i}",
            step=AuditStep.DECISION,
            key=f"{agent_id}:{i}",
            actor="tester",
            occurred_at=start + timedelta(seconds=i),
            detail={"i": i, "note": 'ünïcode and "quotes"', "nested": {"b": 1.5, "a": [1, 2]}},
        )
        for i in range(n)
    ]


async def test_one_action_end_to_end_leaves_every_step_in_the_audit(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high", fail_times=1)
    await aiops.approvals.signal(action_id, ApprovalRequest(approver="oscar", comment="let me"))
    await aiops.approvals.approve(action_id, "alice", "change window is open")
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.VERIFIED

    rows = await aiops.audit.rows(action_id=action_id)
    steps = [r.step for r in rows]
    assert steps == [
        "decision",
        "approval_refused",
        "approval",
        "execution_attempt",
        "execution_attempt",
        "execution_result",
        "verification",
        "action_finished",
    ]
    by_step = {r.step: r for r in rows}
    assert by_step["decision"].detail["outcome"] == "require_approval"
    assert by_step["decision"].detail["config_version"] == record.config_version == 1
    assert "risk" in by_step["decision"].detail["reason"]
    refused = by_step["approval_refused"]
    assert refused.actor == "oscar" and "role" in refused.detail["reason"]
    approval = by_step["approval"]
    assert (approval.actor, approval.detail["comment"], approval.detail["approved"]) == (
        "alice",
        "change window is open",
        True,
    )
    attempts = [r for r in rows if r.step == "execution_attempt"]
    assert [a.detail["attempt"] for a in attempts] == [1, 2]
    assert "transient failure" in attempts[0].detail["error"] and attempts[1].detail["error"] is None
    assert by_step["execution_result"].detail["success"] is True
    assert by_step["verification"].detail["verified"] is True
    assert by_step["action_finished"].detail["status"] == "verified"

    agent_rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: any(r.step == "event_received" for r in rs),
    )
    received = next(r for r in agent_rows if r.step == "event_received")
    assert received.detail["proposed_action"] == action_id
    assert any(r.step == "agent_lifecycle" and r.detail["state"] == "started" for r in agent_rows)
    [report] = await aiops.audit.verify(config.id)
    assert report.ok and report.rows_checked == len(agent_rows)


async def test_a_rejected_and_a_failed_action_are_audited_too(aiops: AiopsClient, worker) -> None:
    config = agent_config(
        "scripted", approval=team(), retry={"maximum_attempts": 2, "initial_interval_seconds": 0.1}
    )
    _, rejected_id, _ = await start_pending_action(aiops, config, "high")
    await aiops.approvals.reject(rejected_id, "bob", "not during the freeze")
    await aiops.approvals.wait_for_action(rejected_id)
    rows = await aiops.audit.rows(action_id=rejected_id)
    assert [r.step for r in rows] == ["decision", "approval", "action_finished"]
    assert rows[1].detail["approved"] is False and rows[2].detail["status"] == "rejected"

    _, failed_id, _ = await start_pending_action(aiops, config, "high", fail_times=5)
    await aiops.approvals.approve(failed_id, "alice")
    assert (await aiops.approvals.wait_for_action(failed_id)).status == ActionStatus.FAILED
    rows = await aiops.audit.rows(action_id=failed_id)
    assert [r.step for r in rows][-4:] == [
        "execution_attempt",
        "execution_attempt",
        "execution_result",
        "action_finished",
    ]
    assert "transient failure" in rows[-2].detail["error"]


async def test_a_retried_write_lands_once(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"idem-{uuid.uuid4().hex[:8]}"
    batch = records(agent, 5)
    assert await log.append(batch) == 5
    assert await log.append(batch) == 0, "the same batch again (a retried activity) writes nothing"
    assert await log.append([*batch[:2], *records(agent, 7)[5:]]) == 2
    rows = await log.rows(agent_id=agent)
    assert [r.key for r in rows] == [f"{agent}:{i}" for i in range(7)]
    assert (await log.verify(agent)).ok


async def test_concurrent_writers_keep_one_valid_chain_per_agent(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"race-{uuid.uuid4().hex[:8]}"
    batches = [[r.model_copy(update={"key": f"{r.key}/{w}"}) for r in records(agent, 10)] for w in range(4)]
    written = await asyncio.gather(*(log.append(b) for b in batches))
    assert sum(written) == 40
    report = await log.verify(agent)
    assert report.ok and report.rows_checked == 40


async def test_tampering_is_detected_at_the_first_broken_link(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"tamper-{uuid.uuid4().hex[:8]}"
    await log.append(records(agent, 6))
    rows = await log.rows(agent_id=agent)
    assert (await log.verify(agent)).ok

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1", rows[2].seq)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM audit_log WHERE seq = $1", rows[2].seq)

    async with pool.acquire() as conn:  # a superuser can bypass the triggers; the chain still tells
        await conn.execute("SET session_replication_role = replica")
        try:
            await conn.execute(
                "UPDATE audit_log SET detail = jsonb_set(detail, '{i}', '99') WHERE seq = $1", rows[2].seq
            )
            altered = await log.verify(agent)
            assert not altered.ok and altered.broken_at_seq == rows[2].seq
            assert "altered" in (altered.problem or "")

            await conn.execute(
                "UPDATE audit_log SET detail = jsonb_set(detail, '{i}', '2') WHERE seq = $1", rows[2].seq
            )
            assert (await log.verify(agent)).ok, "restoring the content restores the chain"

            await conn.execute("DELETE FROM audit_log WHERE seq = $1", rows[4].seq)
            removed = await log.verify(agent)
            assert not removed.ok and removed.broken_at_seq == rows[5].seq
            assert "removed" in (removed.problem or "")
        finally:
            await conn.execute("SET session_replication_role = origin")


async def test_queries_by_agent_action_and_time_range(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"query-{uuid.uuid4().hex[:8]}"
    other = f"query-{uuid.uuid4().hex[:8]}"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await log.append(records(agent, 10, start))
    await log.append(records(other, 3, start))
    assert len(await log.rows(agent_id=agent)) == 10
    assert [r.key for r in await log.rows(action_id=f"action-{agent}:4")] == [f"{agent}:4"]
    window = await log.rows(
        agent_id=agent, since=start + timedelta(seconds=3), until=start + timedelta(seconds=6)
    )
    assert [r.detail["i"] for r in window] == [3, 4, 5]
    newest = await log.rows(agent_id=agent, limit=2, newest_first=True)
    assert [r.detail["i"] for r in newest] == [9, 8]
    assert newest[0].detail["note"] == 'ünïcode and "quotes"'


async def test_an_approval_refused_by_the_update_is_audited_once_by_the_workflow(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    with pytest.raises(AiopsError, match="refused"):
        await aiops.approvals.approve(action_id, "oscar", "operators may try")
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rs: any(r.step == "approval_refused" for r in rs),
    )
    await asyncio.sleep(0.5)  # the client must not add a second row of its own
    rows = await aiops.audit.rows(action_id=action_id)
    [row] = [r for r in rows if r.step == "approval_refused"]
    assert row.actor == "oscar" and row.detail["channel"] == "update"
    assert "role" in row.detail["reason"] and row.detail["comment"] == "operators may try"
    assert (await aiops.audit.verify(config.id))[0].ok


async def test_a_nul_character_cannot_wedge_the_audit_log(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"nul-{uuid.uuid4().hex[:8]}"
    [record] = records(agent, 1)
    hostile = record.model_copy(update={"actor": "mal\x00lory", "detail": {"source": "a\x00b", "k\x00": 1}})
    assert await log.append([hostile]) == 1
    [row] = await log.rows(agent_id=agent)
    assert row.actor == "mal\ufffdlory" and row.detail == {"source": "a\ufffdb", "k\ufffd": 1}
    assert (await log.verify(agent)).ok


async def test_huge_event_fields_are_cut_so_every_row_lands(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    events = [event(source="s" * 9000) for _ in range(60)]
    await aiops.events.send_many(config.id, events, config=config)
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: sum(r.step == "event_received" for r in rs) == 60,
    )
    source = next(r for r in rows if r.step == "event_received").detail["source"]
    assert source.endswith("... (9000 chars)") and len(source) < 2100
    assert (await aiops.audit.verify(config.id))[0].ok


async def quiet_history(client, workflow_id: str) -> list[str]:
    """The workflow's history once it stops growing (its last task is done)."""
    from temporalio.api.enums.v1 import EventType

    handle = client.get_workflow_handle(workflow_id)
    last: list[str] = []
    while True:
        now = [EventType.Name(e.event_type) async for e in handle.fetch_history_events()]
        if now == last:
            return now
        last = now
        await asyncio.sleep(0.3)


async def test_a_decision_writes_its_own_audit_rows_so_an_event_costs_no_audit_activity(
    aiops: AiopsClient, client, worker
) -> None:
    config = agent_config("recorder")
    await aiops.events.send_many(config.id, [event()], config=config)
    await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: sum(r.step == "event_received" for r in rs) == 1,
    )
    workflow_id = f"agent-{config.id}"
    seen = len(await quiet_history(client, workflow_id))

    decided, filtered = event("alert"), event("health_check")  # the recorder does not take health checks
    await aiops.events.send_many(config.id, [decided, filtered])
    rows = await eventually(
        lambda: aiops.audit.rows(agent_id=config.id),
        lambda rs: sum(r.step == "event_received" for r in rs) == 3,
    )
    by_event = {r.detail.get("event_id"): r for r in rows if r.step == "event_received"}
    assert by_event[decided.id].detail["decision_error"] is None
    assert "does not subscribe" in by_event[filtered.id].detail["filtered"]
    later = (await quiet_history(client, workflow_id))[seen:]
    assert "EVENT_TYPE_MARKER_RECORDED" in later  # decided by a local activity ...
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in later, later  # ... which wrote the rows too
    assert (await aiops.audit.verify(config.id))[0].ok


async def test_without_a_database_an_event_costs_six_history_events_and_no_activity(client) -> None:
    from activities.agent_activities import AgentActivities
    from aiops.runtime.worker_build import build_worker

    task_queue = f"tq-{uuid.uuid4()}"
    aiops = AiopsClient(client, task_queue)
    config = agent_config("recorder")
    workflow_id = f"agent-{config.id}"
    async with build_worker(client, task_queue, AgentActivities(client=client)):
        await aiops.events.send_many(config.id, [event()], config=config)
        await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1)
        start = await quiet_history(client, workflow_id)
        # Registering the config and initializing, in one local activity; no audit activity, with
        # nowhere to write: no activity at all.
        assert start.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") == 0, start

        await aiops.events.send_many(config.id, [event()])
        await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 2)
        assert (await quiet_history(client, workflow_id))[len(start) :] == [
            "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED",
            "EVENT_TYPE_WORKFLOW_TASK_STARTED",
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED",
            "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
            "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED",
            "EVENT_TYPE_MARKER_RECORDED",
        ]
