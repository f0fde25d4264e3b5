"""Human approval through every channel: CLI signal, update, refusals, quorum, rejection, pause."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import asyncpg
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent_activities import AgentActivities
from activities.audit_activities import AuditActivities
from activities.database.audit_log import AuditLog
from aiops.client import AiopsClient, AiopsError
from aiops.contracts import action as action_contract
from aiops.contracts import search_attributes as sa
from aiops.contracts.action import ActionMessages, ActionRecord, ActionStatus, ApprovalRequest
from aiops.contracts.agent import hooks_task_queue
from aiops.runtime.activation_memory import detached_runner
from aiops.runtime.worker_build import build_worker
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from workflows.action.workflow import ActionWorkflow


async def pending_action(aiops: AiopsClient, risk: str = "high", requested_by: str = "dave"):
    config = agent_config("scripted", approval=team())
    _, action_id, record = await start_pending_action(aiops, config, risk, requested_by=requested_by)
    return config, action_id, record


async def final(aiops: AiopsClient, action_id: str) -> ActionRecord:
    return await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)


async def test_approve_by_signal_from_the_temporal_cli(aiops: AiopsClient, worker, address: str) -> None:
    config, action_id, record = await pending_action(aiops)
    assert record.decision is not None and "semi_auto runs up to low" in record.decision.reason
    # Visibility is eventually consistent: the inbox lists the action a moment after its status says so.
    await eventually(lambda: aiops.approvals.pending(config.id), lambda ids: action_id in ids)
    assert "temporal workflow signal --workflow-id " + action_id in record.approve_command

    result = await asyncio.to_thread(
        subprocess.run,
        [TEMPORAL_BIN, "workflow", "signal", "--address", address, "--workflow-id", action_id,
         "--name", action_contract.APPROVE, "--input", json.dumps({"approver": "alice", "comment": "ok"})],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    done = await final(aiops, action_id)
    assert done.status == ActionStatus.VERIFIED
    assert [(a.approver, a.channel, a.comment) for a in done.approvals] == [("alice", "signal", "ok")]
    assert [h.status for h in done.history][:4] == [
        ActionStatus.PROPOSED, ActionStatus.PLANNING, ActionStatus.PENDING_APPROVAL, ActionStatus.APPROVED,
    ]  # fmt: skip
    assert LEDGER["executed"] == [action_id]
    await eventually(lambda: aiops.approvals.pending(config.id), lambda ids: action_id not in ids)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 1
    )
    assert status.pending_actions == []


async def test_approve_by_update_returns_the_record(aiops: AiopsClient, worker) -> None:
    _, action_id, _ = await pending_action(aiops)
    record = await aiops.approvals.approve(action_id, "bob", "lgtm")
    assert record.approvals[0].channel == "update"
    assert (await final(aiops, action_id)).status == ActionStatus.VERIFIED


@pytest.mark.parametrize(
    ("approver", "risk", "message"),
    [
        ("mallory", "high", "unknown approver 'mallory'"),
        ("oscar", "high", "needs one of the roles ['admin', 'sre']"),
        ("dave", "high", "unknown approver"),
    ],
)
async def test_update_refuses_at_once_with_the_reason(aiops: AiopsClient, worker, approver, risk, message):
    _, action_id, _ = await pending_action(aiops, risk=risk)
    with pytest.raises(AiopsError, match=re.escape(message)):
        await aiops.approvals.approve(action_id, approver)
    record = await aiops.approvals.action(action_id)
    assert record.status == ActionStatus.PENDING_APPROVAL
    assert record.approvals == []


async def test_the_requester_may_not_approve_their_own_action(aiops: AiopsClient, worker) -> None:
    _, action_id, _ = await pending_action(aiops, requested_by="alice")
    with pytest.raises(AiopsError, match="alice requested this action and may not approve it"):
        await aiops.approvals.approve(action_id, "alice")
    await aiops.approvals.approve(action_id, "bob")
    assert (await final(aiops, action_id)).status == ActionStatus.VERIFIED


async def test_critical_needs_two_distinct_approvers(aiops: AiopsClient, worker) -> None:
    _, action_id, _ = await pending_action(aiops, risk="critical")
    await aiops.approvals.approve(action_id, "alice")
    with pytest.raises(AiopsError, match="alice has already approved this action"):
        await aiops.approvals.approve(action_id, "alice")
    await aiops.approvals.signal(action_id, ApprovalRequest(approver="alice", comment="again"))
    # Both refusals are recorded by the workflow, the update's too (it is decided in the handler).
    record = await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.refused) == 2)
    assert [r.channel for r in record.refused] == ["update", "signal"]
    assert record.status == ActionStatus.PENDING_APPROVAL
    assert LEDGER["executed"] == []
    await aiops.approvals.approve(action_id, "carol")
    done = await final(aiops, action_id)
    assert done.status == ActionStatus.VERIFIED
    assert sorted(a.approver for a in done.approvals) == ["alice", "carol"]


async def test_the_approval_that_completes_the_quorum_is_shown_a_task_after_execute_starts(
    aiops: AiopsClient, worker, tmp_path
) -> None:
    """The task that takes the quorum's last approval schedules execute with no search attribute
    upsert in it (on the dev server one made the server start execute about 3 ms later,
    bench/upsert_probe.py); ``execute_dispatched``, scheduled beside it, brings the next task, which
    shows ``executing`` and the approvals in the inbox while execute still runs. An approval short
    of the quorum is shown at once, as before."""
    release = tmp_path / "release"
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "critical", hold_until=str(release))
    handle = aiops.client.get_workflow_handle(action_id)
    await aiops.approvals.approve(action_id, "alice")
    one = await eventually(handle.describe, lambda d: d.typed_search_attributes.get(sa.APPROVALS) == 1)
    assert one.typed_search_attributes.get(sa.ACTION_STATUS) == "pending_approval"
    await aiops.approvals.approve(action_id, "carol")
    shown = await eventually(
        handle.describe, lambda d: d.typed_search_attributes.get(sa.ACTION_STATUS) == "executing"
    )
    assert shown.typed_search_attributes.get(sa.APPROVALS) == 2
    assert (await aiops.approvals.action(action_id)).status == ActionStatus.EXECUTING
    assert LEDGER["executed"] == []  # shown while execute runs, not at its end
    release.touch()
    assert (await final(aiops, action_id)).status == ActionStatus.VERIFIED
    events = [e async for e in handle.fetch_history_events()]

    def scheduled(name: str) -> int:
        return next(
            i
            for i, e in enumerate(events)
            if e.activity_task_scheduled_event_attributes.activity_type.name == name
        )

    execute, dispatched = scheduled("execute_action"), scheduled("execute_dispatched")
    kinds = [e.event_type for e in events]
    started = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    task_done = max(i for i, k in enumerate(kinds[:execute]) if k == started)
    same_task = kinds[task_done:dispatched]
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in same_task
    assert dispatched > execute and EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED not in same_task[1:]
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in events[dispatched:]
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    assert upserts[0]["AiopsActionStatus"].data == b'"executing"'
    assert upserts[0]["AiopsApprovals"].data == b"2"
    final_attributes = (await handle.describe()).typed_search_attributes
    assert final_attributes.get(sa.ACTION_STATUS) == "verified" and final_attributes.get(sa.APPROVALS) == 2


async def test_a_cancel_while_the_inbox_waits_for_execute_dispatched_reaches_execute(
    client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path
) -> None:
    """A cancel of the action is meant for what it waits on. While it waits for the no-op that
    shows ``executing`` (held here by a worker whose ``execute_dispatched`` does not return), the
    cancel is passed on to execute, as it was when the action awaited execute itself: the action
    ends failed, execute cancelled, and never finishes its work."""
    started, never = asyncio.Event(), asyncio.Event()

    @activity.defn(name="execute_dispatched")
    async def dispatched_never_returns() -> None:
        started.set()
        await never.wait()

    release = tmp_path / "release"
    plain = AgentActivities(client=client, agent_types=["example"])
    scripted = AgentActivities(client=client, agent_types=["scripted"])
    aiops = AiopsClient(client, task_queue, pool, actor="bob")
    asks = [scripted.plan_action_here, scripted.agent_hold_state, scripted.action_outcome]
    audit = AuditActivities(AuditLog(pool)).all()
    LEDGER.clear()
    try:
        async with (
            build_worker(client, task_queue, plain, pool=pool),
            Worker(
                client,
                task_queue=hooks_task_queue(task_queue, "scripted"),
                workflows=[ActionWorkflow],
                activities=[*scripted.hooks(), *asks, dispatched_never_returns, *audit],
                workflow_runner=detached_runner(),
            ),
        ):
            config = agent_config("scripted", approval=team())
            alert = event("alert", risk="high", hold_until=str(release))
            await aiops.events.send(config.id, alert, config=config)
            action_id = aiops.approvals.action_id(config.id, alert.id)
            await eventually(
                lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
            )
            await aiops.approvals.approve(action_id, "alice")
            await asyncio.wait_for(started.wait(), 30)
            await client.get_workflow_handle(action_id).cancel()
            done = await final(aiops, action_id)
            assert done.status == ActionStatus.FAILED, done
            assert "cancel" in (done.error or "").lower(), done.error
            assert LEDGER["executed"] == []
            await aiops.agents.stop(config.id)
    finally:
        release.touch()  # the execute hook's thread ends at once


@pytest.mark.parametrize(("local_decisions", "deferred"), [(True, False), (False, True)])
async def test_a_dry_run_defers_the_executing_status_only_where_the_task_upserts_nothing(
    aiops: AiopsClient, worker, local_decisions: bool, deferred: bool
) -> None:
    """An auto-approved action with a dry run: planned in a local activity, execute is scheduled
    by the first task, which upserts ``planning`` anyway, so ``executing`` goes with it and no
    ``execute_dispatched`` runs; planned by activity, execute is scheduled by the plan's task,
    which has nothing else to upsert, so ``executing`` is shown by the next one."""
    config = agent_config("scripted", runtime={"local_decisions": local_decisions})
    await aiops.agents.start(config)
    e = event("alert", risk="low")
    await aiops.events.send(config.id, e)
    action_id = aiops.approvals.action_id(config.id, e.id)
    assert (await final(aiops, action_id)).status == ActionStatus.VERIFIED
    handle = aiops.client.get_workflow_handle(action_id)
    names = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert ("execute_dispatched" in names) is deferred, names
    assert ("plan_action" in names) is deferred, names  # else planned by plan_action_here
    assert (await handle.describe()).typed_search_attributes.get(sa.ACTION_STATUS) == "verified"


async def test_refused_signals_change_nothing_but_are_recorded(aiops: AiopsClient, worker) -> None:
    _, action_id, _ = await pending_action(aiops)
    await aiops.approvals.action_handle(action_id).signal(ActionMessages.approve, {"approver": "mallory"})
    await aiops.approvals.action_handle(action_id).signal(ActionMessages.approve, {"aprover": "alice"})
    await aiops.approvals.action_handle(action_id).signal(
        ActionMessages.approve, {"approver": "oscar", "comment": "pls"}
    )
    record = await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.refused) == 3)
    assert record.status == ActionStatus.PENDING_APPROVAL
    reasons = [r.reason for r in record.refused]
    assert "unknown approver 'mallory'" in reasons[0]
    assert "aprover: Extra inputs are not permitted" in reasons[1]
    assert "oscar may not approve high risk actions" in reasons[2]


async def test_reject_ends_the_action_and_later_decisions_are_refused(aiops: AiopsClient, worker) -> None:
    config, action_id, _ = await pending_action(aiops)
    await aiops.approvals.reject(action_id, "bob", "not during the freeze")
    done = await final(aiops, action_id)
    assert done.status == ActionStatus.REJECTED
    assert "not during the freeze" in (done.error or "")
    assert LEDGER["executed"] == []
    with pytest.raises(AiopsError, match="no longer pending approval"):
        await aiops.approvals.approve(action_id, "alice")
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_rejected == 1
    )
    assert status.pending_actions == []


async def test_the_approval_binds_to_the_plan_digest_and_execution_gets_the_plan(aiops: AiopsClient, worker):
    _, action_id, record = await pending_action(aiops)
    assert record.plan is not None and record.plan_digest
    with pytest.raises(AiopsError, match="the plan changed since it was reviewed"):
        await aiops.approvals.approve(action_id, "alice", plan_digest="0" * 64)
    await aiops.approvals.approve(action_id, "alice", plan_digest=record.plan_digest)
    done = await final(aiops, action_id)
    assert done.approvals[0].plan_digest == record.plan_digest
    assert done.result is not None and done.result.data["plan"] == record.plan.model_dump()


async def test_pausing_the_agent_holds_approved_actions(aiops: AiopsClient, worker) -> None:
    config, action_id, _ = await pending_action(aiops)
    await aiops.agents.pause(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state.value == "paused")
    await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.held)
    await aiops.approvals.approve(action_id, "alice")
    held = await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.APPROVED
    )
    assert held.status == ActionStatus.APPROVED
    assert LEDGER["executed"] == []
    await aiops.agents.resume(config.id)
    done = await final(aiops, action_id)
    assert done.status == ActionStatus.VERIFIED
    assert done.held is False


async def test_denied_actions_never_wait_or_run(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval={**team().model_dump(), "deny_at_or_above": "high"})
    await aiops.agents.start(config)
    e = event("alert", risk="critical")
    await aiops.events.send(config.id, e)
    done = await final(aiops, aiops.approvals.action_id(config.id, e.id))
    assert done.status == ActionStatus.DENIED
    assert "denies actions of risk high or above" in (done.error or "")
    assert LEDGER["attempt"] == []


async def test_the_web_ui_gets_a_summary_details_and_current_details(aiops: AiopsClient, worker) -> None:
    _, action_id, record = await pending_action(aiops)
    description = await aiops.approvals.action_handle(action_id).describe()
    summary = await description.static_summary()
    details = await description.static_details()
    assert summary is not None and summary == "[high] run_command on vpc-main: handle for vpc-main"
    assert details is not None and "**policy**: require_approval" in details
    # The commands, wrapped onto short lines so the Web UI's narrow column shows them whole.
    for verb, name in (("signal", "approve"), ("update execute", "decide")):
        wrapped = f"temporal workflow {verb} \\\n      --workflow-id '{action_id}' \\\n      --name {name}"
        assert wrapped in details
    metadata = await aiops.approvals.action_handle(action_id).query("__temporal_workflow_metadata")
    current = metadata["currentDetails"] if isinstance(metadata, dict) else metadata.current_details
    assert current.startswith("### Waiting for approval: 0 of 1")
    assert record.plan is not None and record.plan.summary in current
