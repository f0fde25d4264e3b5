"""Bad or unlucky input never wedges an agent or an action, and safety limits hold under bursts."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import RawValue

from aiops.client import AiopsClient
from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import ActionMessages, ActionStatus, action_workflow_id
from aiops.contracts.agent import AgentState, agent_workflow_id
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, event, eventually, start_pending_action, team, wait_pending
from tests.support.agents_for_tests import LEDGER
from workflows.agent.workflow import AgentWorkflow


async def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [TEMPORAL_BIN, *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_action_ids_of_different_agents_never_collide() -> None:
    assert action_workflow_id("k8s", "prod-123") != action_workflow_id("k8s-prod", "123")
    assert action_workflow_id("a", "x" * 500) != action_workflow_id("a", "x" * 499 + "y")


async def test_signals_without_input_or_with_extra_input_are_harmless(
    aiops: AiopsClient, worker, address: str
) -> None:
    config = agent_config("scripted", approval=team())
    wf = agent_workflow_id(config.id)
    _, action_id, _ = await start_pending_action(aiops, config)

    for name in (agent_contract.SUBMIT_EVENT, agent_contract.SUBMIT_EVENTS):
        assert (await cli(address, "workflow", "signal", "--workflow-id", wf, "--name", name)).returncode == 0
    assert (
        await cli(
            address,
            "workflow",
            "signal",
            "--workflow-id",
            wf,
            "--name",
            agent_contract.PAUSE,
            "--input",
            "{}",
        )
    ).returncode == 0
    assert (
        await cli(
            address,
            "workflow",
            "signal",
            "--workflow-id",
            wf,
            "--name",
            agent_contract.RESUME,
            "--input",
            "{}",
        )
    ).returncode == 0
    assert (
        await cli(
            address, "workflow", "signal", "--workflow-id", action_id, "--name", action_contract.APPROVE
        )
    ).returncode == 0

    record = await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.refused) == 1)
    assert "approver: Field required" in record.refused[0].reason
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_rejected == 2
    )
    assert status.state == AgentState.RUNNING
    await aiops.approvals.approve(action_id, "alice")
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED


async def test_an_unreadable_approval_is_refused_and_audited_and_the_action_still_waits(
    aiops: AiopsClient, worker
) -> None:
    """An approve or reject signal whose payload no converter can read (broken JSON, an unknown
    encoding) is refused and audited by the workflow, not dropped by the SDK with a traceback; the
    action keeps waiting and a proper approval afterwards goes through."""
    _, action_id, _ = await start_pending_action(aiops, agent_config("scripted", approval=team()))
    handle = aiops.approvals.action_handle(action_id)
    broken = Payload(metadata={"encoding": b"json/plain"}, data=b'{"approver": "alice"')
    unknown = Payload(metadata={"encoding": b"binary/who-knows"}, data=b"\x00\x01")
    await handle.signal(action_contract.APPROVE, RawValue(broken))  # as the temporal CLI names it
    await handle.signal(ActionMessages.reject, RawValue(unknown))

    record = await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.refused) == 2)
    assert record.status == ActionStatus.PENDING_APPROVAL and record.approvals == []
    assert [(r.approved, r.channel) for r in record.refused] == [(True, "signal"), (False, "signal")]
    assert all("the payload is not JSON" in r.reason for r in record.refused), record.refused
    assert "binary/who-knows" in record.refused[1].reason
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rows: sum(r.step == "approval_refused" for r in rows) == 2,
    )
    assert all("not JSON" in r.detail["reason"] for r in rows if r.step == "approval_refused")

    await aiops.approvals.approve(action_id, "alice")
    done = await aiops.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.VERIFIED
    assert [a.approver for a in done.approvals] == ["alice"]


async def test_the_automatic_execution_limit_holds_within_one_batch(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval={**team().model_dump(), "max_auto_executions": 1})
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    events = [event("alert", risk="low") for _ in range(4)]
    await aiops.events.send_many(config.id, events)
    records = [
        await eventually(
            lambda e=e: aiops.approvals.action(aiops.approvals.action_id(config.id, e.id)),
            lambda r: r.status in (ActionStatus.PENDING_APPROVAL, ActionStatus.VERIFIED),
        )
        for e in events
    ]
    assert sorted(r.decision.outcome.value for r in records if r.decision) == [
        "auto_execute", "require_approval", "require_approval", "require_approval",
    ]  # fmt: skip


async def test_a_redelivered_event_keeps_its_live_action_tracked(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team(), runtime={"dedup_window": 1})
    first = event("alert", risk="high")
    await aiops.agents.start(config)
    await aiops.events.send(config.id, first)
    action_id = aiops.approvals.action_id(config.id, first.id)
    await wait_pending(aiops, action_id)
    await aiops.events.send(config.id, event("alert", risk="high"))  # pushes `first` out of the window
    await aiops.events.send(config.id, first)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_duplicate == 1
    )
    assert action_id in [p.action_id for p in status.pending_actions]
    await aiops.approvals.reject(action_id, "bob", "no")
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_rejected == 1
    )


async def test_pause_sent_during_initialization_is_kept(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await aiops.agents.pause(config.id)
    await aiops.events.send(config.id, event())
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_received == 1
    )
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.state != AgentState.INITIALIZING
    )
    assert status.state == AgentState.PAUSED
    assert status.counters.events_processed == 0


async def test_a_full_queue_spills_signals_instead_of_growing_or_dropping(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder", runtime={"max_queue": 3})
    await aiops.agents.start(config)
    await aiops.agents.pause(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.PAUSED)
    # The signal path (Web UI, raw CLI) cannot say no: what does not fit goes to the agent's
    # overflow workflow and comes back when there is room (test_overflow.py); the client's intake
    # update is refused and sent again instead (test_event_intake).
    handle = aiops.agents.handle(config.id)
    await handle.signal(AgentWorkflow.submit_events, [event().model_dump(mode="json") for _ in range(5)])
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_spilled == 2
    )
    assert status.queue_length <= 3 and status.counters.events_rejected == 0
    await aiops.agents.resume(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 5)


async def test_stop_without_draining_aborts_waiting_actions(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    handle, action_id, _ = await start_pending_action(aiops, config)
    await aiops.agents.stop(config.id, reason="decommissioned", drain=False)
    await handle.result()
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.REJECTED
    assert record.error == "aborted: decommissioned"
    assert LEDGER["attempt"] == []


async def test_stopping_a_paused_agent_releases_its_approved_actions(aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    handle, action_id, _ = await start_pending_action(aiops, config)
    await aiops.agents.pause(config.id)
    await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.held)
    await aiops.approvals.approve(action_id, "alice")
    await aiops.agents.stop(config.id)
    await handle.result()
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED


async def test_failed_initialization_hands_back_the_queued_events(aiops: AiopsClient, worker) -> None:
    config = agent_config("no_such_type", runtime={"worker_pickup_seconds": 1})
    e = event()
    await aiops.events.send(config.id, e, config=config, require_worker=False)
    with pytest.raises(WorkflowFailureError) as failure:
        await aiops.agents.handle(config.id).result()
    assert [d["id"] for d in failure.value.cause.details[0]] == [e.id]


HUGE = "x" * 1_900_000  # under the server's 2 MB payload limit, far over anything a person types


@pytest.mark.allow_failed_workflow_tasks(
    reason="1.9 MB signals sent while a workflow task runs overflow the server's 2 MB buffer of "
    "pending events; the server then fails that task (FORCE_CLOSE_COMMAND) to flush them, and the "
    "next task takes them: the action stays running and answers (asserted below)"
)
async def test_megabyte_approval_fields_are_refused_and_every_query_still_answers(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config)
    handle = aiops.approvals.action_handle(action_id)
    # More refusals than an action keeps (the oldest are dropped from state), a few at the server's
    # payload limit. Not all: each lands in history before it is refused, and 27 of them would
    # bring the run to the server's 50 MB history limit, where the server terminates any workflow.
    for n in range(25):
        await handle.signal(ActionMessages.approve, {"approver": HUGE if n < 3 else "x" * 50_000})
    await handle.signal(ActionMessages.approve, {"approver": "alice", "comment": HUGE})
    await handle.signal(ActionMessages.reject, {"approver": "bob", "credential": HUGE})
    record = await eventually(lambda: aiops.approvals.action(action_id), lambda r: r.refused_total == 27)
    assert record.status == ActionStatus.PENDING_APPROVAL and record.approvals == []
    assert len(record.refused) == action_contract.MAX_REFUSALS_KEPT
    assert "at most 200 characters" in record.refused[0].reason
    assert len(record.model_dump_json()) < 100_000
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    inbox = await eventually(lambda: aiops.approvals.inbox(config.id), lambda found: len(found) == 1)
    assert [a for a, _ in inbox] == [action_id]
    approved = await aiops.approvals.approve(action_id, "alice")  # and a proper approval still works
    assert [a.approver for a in approved.approvals] == ["alice"]


async def test_a_megabyte_config_is_refused_before_anything_is_stored(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    raw = config.model_dump(mode="json") | {"settings": {"blob": HUGE}}
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await aiops.agents.handle(config.id).execute_update(AgentWorkflow.reconfigure, {"config": raw})
    assert "settings.blob: 1900000 characters, over the 8192-character limit" in str(refused.value.cause)
    assert [stored.version for stored in await aiops.config.history(config.id)] == [1]  # nothing stored
    e = event()
    await aiops.events.send(config.id, e)  # the agent is untouched and still decides
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1)
