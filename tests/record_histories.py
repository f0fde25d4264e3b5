"""Record the workflow histories the replay test checks: ``python -m tests.record_histories PREFIX``.

``tests/histories`` holds the current generation (PREFIX ``g1_``, the first one: nothing was
deployed before it, so every older history and every patch were retired together). The policy
(docs/deploy.md, "Versioning workflow code"): a change to workflow code either replays every
history here unchanged, or guards its new path with ``workflow.patched(id)`` and its histories
are recorded with a new PREFIX beside these (never regenerate a file to make a failing replay
pass). Once no run of the old path can be open, the patch becomes ``workflow.deprecate_patch(id)``
and, after the runs that recorded the patch marker are gone too, it is removed with the
histories of the old path. Every patch says in a comment when each step is due.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import tests.support.agents_for_tests  # noqa: F401
from activities.agent_activities import AgentActivities
from activities.database.pool import open_pool
from activities.detector_activities import detector_schedule_id
from agents.registry import load_agent_modules
from aiops.client import AiopsClient, AiopsError
from aiops.contracts.action import AbortRequest, ActionMessages, ActionStatus, HoldRequest
from aiops.contracts.agent import StopRequest, agent_workflow_id
from aiops.contracts.config import AgentVerb, NotifyChannel
from aiops.contracts.search_attributes import ALL
from aiops.keys import KeyFile
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually, team
from tests.support import identity_provider as idp
from tests.support.http_receiver import http_receiver
from tests.support.postgres_server import PostgresServer
from workflows.agent.workflow import AgentWorkflow
from workflows.approval_token import generate_private_key, private_key_pem

HISTORIES = Path(__file__).parent / "histories"


PREFIX = ""


def unrecorded(prefix: str, name: str) -> Path:
    """Where history ``name`` goes under ``prefix``; stops the recorder if it is there already."""
    path = HISTORIES / f"{prefix}{name}.json"
    if path.exists():
        raise SystemExit(f"{path} exists: recorded histories are never overwritten; use a new prefix")
    return path


async def save(aiops: AiopsClient, name: str, workflow_id: str, run_id: str | None = None) -> None:
    history = await aiops.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    path = unrecorded(PREFIX, name)
    path.write_text(history.to_json())
    print(f"recorded {name} ({len(history.events)} events)")


async def record(aiops: AiopsClient) -> None:
    # An agent's whole life: events with and without actions, filtering, duplicates, junk, pause, stop.
    config = agent_config("recorder", id="replay-agent")
    handle = await aiops.agents.start(config)
    drift = event(act=True, id="r-1")
    await aiops.events.submit(config.id, [drift, event("health_check", id="r-2"), drift, {"nonsense": 1}])
    await aiops.agents.handle(config.id).signal(AgentWorkflow.submit_events, [{"nonsense": 2}])  # signal path
    await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, drift.id))
    await aiops.agents.pause(config.id)
    await aiops.events.send(config.id, event(id="r-3", boom=True))
    await aiops.agents.resume(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 2)
    await aiops.config.apply(config.model_copy(update={"name": "renamed"}), author="recorder", comment="v2")
    try:
        await aiops.config.apply(config.model_copy(update={"type": "scripted"}), author="recorder")
    except AiopsError:
        pass
    await aiops.config.rollback(config.id, 1, author="recorder")
    await aiops.agents.stop(config.id, reason="recorded")
    await handle.result()
    await save(aiops, "agent_lifecycle", agent_workflow_id(config.id))

    # A run that ends in continue-as-new.
    config = agent_config("recorder", id="replay-can", runtime={"max_events_per_run": 3})
    first = await aiops.agents.start(config)
    for i in range(6):
        await aiops.events.send(config.id, event(id=f"c-{i}"))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 6)
    await save(aiops, "agent_continue_as_new", agent_workflow_id(config.id), first.first_execution_run_id)

    # Actions: automatic, approved by signal after a refusal, approved by update, rejected, rolled back.
    config = agent_config("scripted", id="replay-actions", approval=team())
    await aiops.agents.start(config)
    auto, signalled, updated, rejected, rolled, unplanned = (
        event("alert", id="a-auto", risk="low"),
        event("alert", id="a-signal", risk="high"),
        event("alert", id="a-update", risk="critical"),
        event("alert", id="a-reject", risk="medium"),
        event("alert", id="a-rollback", risk="low", verify=False),
        # The local plan fails, the usual plan activity fails too: the action fails unplanned.
        event("alert", id="a-plan-fails", risk="low", plan_fails=True),
    )
    every = (auto, signalled, updated, rejected, rolled, unplanned)
    await aiops.events.send_many(config.id, list(every))
    ids = {e.id: aiops.approvals.action_id(config.id, e.id) for e in every}
    for key in ("a-signal", "a-update", "a-reject"):
        await eventually(
            lambda k=key: aiops.approvals.action(ids[k]), lambda r: r.status == ActionStatus.PENDING_APPROVAL
        )
    await aiops.approvals.action_handle(ids["a-signal"]).signal(
        ActionMessages.approve, {"approver": "mallory"}
    )
    await aiops.approvals.action_handle(ids["a-signal"]).signal(
        ActionMessages.approve, {"approver": "alice", "comment": "ok"}
    )
    await aiops.approvals.approve(ids["a-update"], "alice")
    await aiops.approvals.approve(ids["a-update"], "carol")
    await aiops.approvals.reject(ids["a-reject"], "bob", "no")
    for name, key in [
        ("action_auto", "a-auto"),
        ("action_signal_approval", "a-signal"),
        ("action_update_quorum", "a-update"),
        ("action_rejected", "a-reject"),
        ("action_rolled_back", "a-rollback"),
        ("action_plan_failed", "a-plan-fails"),
    ]:
        await aiops.approvals.wait_for_action(ids[key])
        await save(aiops, name, ids[key])

    # Signed approvals: an unsigned signal and an unsigned update refused in history, two
    # signed approvals, and a webhook told when the action waits and when it is decided.
    alice, bob = (
        KeyFile(approver=n, private_key=private_key_pem(generate_private_key()).decode())
        for n in ("alice", "bob")
    )
    async with http_receiver() as receiver:
        approval = team({"alice": alice.public_key(), "bob": bob.public_key()}).model_copy(
            update={"notify": [NotifyChannel(type="webhook", url=receiver.url("/hook"))]}
        )
        config = agent_config("scripted", id="replay-signed", approval=approval)
        await aiops.agents.start(config)
        critical = event("alert", id="s-critical", risk="critical")
        await aiops.events.send_many(config.id, [critical])
        signed_id = aiops.approvals.action_id(config.id, critical.id)
        await eventually(
            lambda: aiops.approvals.action(signed_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
        )
        await eventually(lambda: asyncio.sleep(0, receiver.accepted("/hook")), lambda got: len(got) == 1)
        await aiops.approvals.action_handle(signed_id).signal(ActionMessages.approve, {"approver": "alice"})
        try:
            await aiops.approvals.approve(signed_id, "bob", "unsigned")
        except AiopsError:
            pass
        await aiops.approvals.approve(signed_id, comment="signed", key=alice)
        await aiops.approvals.approve(signed_id, comment="signed too", key=bob)
        await aiops.approvals.wait_for_action(signed_id)
        await eventually(lambda: asyncio.sleep(0, receiver.accepted("/hook")), lambda got: len(got) == 2)
        await save(aiops, "action_signed_notified", signed_id)

    # An agent with a scheduled detector: a tick delivers a finding, a config change moves the
    # schedule, stopping removes it.
    watching = agent_config(
        "watching",
        id="replay-watching",
        settings={"finding": "drift"},
        runtime={"detect_every_seconds": 3600},
    )
    await aiops.agents.start(watching)
    schedule = aiops.client.get_schedule_handle(detector_schedule_id(watching.id))
    await eventually(schedule.describe, lambda d: True)
    await schedule.trigger()
    await aiops.approvals.wait_for_action(
        aiops.approvals.action_id(watching.id, f"found-{watching.id}-drift"), appear_within=30
    )
    described = await eventually(schedule.describe, lambda d: bool(d.info.recent_actions))
    detector_run = described.info.recent_actions[0].action
    runtime = watching.runtime.model_copy(update={"detect_every_seconds": 60})
    await aiops.config.apply(watching.model_copy(update={"runtime": runtime}), author="recorder")
    await aiops.agents.stop(watching.id)
    await aiops.agents.handle(watching.id).result()
    await save(aiops, "agent_detector", agent_workflow_id(watching.id))
    await save(aiops, "detector_run", detector_run.workflow_id, detector_run.first_execution_run_id)

    # Incidents: three alerts of one group are decided once; resolving them closes it.
    grouping = agent_config("scripted", id="replay-incidents", runtime={"incident_window_seconds": 1})
    await aiops.agents.start(grouping)
    alerts = [event("alert", id=f"am:i{n}:firing:1", fingerprint=f"i{n}") for n in range(3)]
    alerts = [a.model_copy(update={"correlation_id": "group-1"}) for a in alerts]
    await aiops.events.send_many(grouping.id, alerts)
    await eventually(
        lambda: aiops.agents.status(grouping.id), lambda s: s.counters.actions_succeeded == 1, within=30
    )
    resolved = [
        a.model_copy(
            update={"id": a.id.replace("firing", "resolved"), "data": {**a.data, "status": "resolved"}}
        )
        for a in alerts
    ]
    await aiops.events.send_many(grouping.id, resolved)
    await eventually(lambda: aiops.agents.status(grouping.id), lambda s: not s.incidents)
    await aiops.agents.stop(grouping.id)
    await aiops.agents.handle(grouping.id).result()
    await save(aiops, "agent_incidents", agent_workflow_id(grouping.id))

    # Signed agent commands: refusals by signal and by update audited in the agent's history,
    # signed pause/resume/reconfigure/stop, and an action that confirms hold/release/abort with its
    # agent (forged ones refused), approved by a trusted identity provider's token.
    oscar = KeyFile(approver="oscar", private_key=private_key_pem(generate_private_key()).decode())
    approval = team({"alice": alice.public_key(), "bob": bob.public_key(), "oscar": oscar.public_key()})
    approval = approval.model_copy(update={"issuers": [idp.trusted_issuer()]})
    commanded = agent_config("scripted", id="replay-commands", approval=approval)
    await aiops.agents.start(commanded)
    handle = aiops.agents.handle(commanded.id)
    await handle.signal(AgentWorkflow.stop, StopRequest(actor="bob"))  # unsigned: refused
    try:
        await aiops.agents.stop(commanded.id, key=oscar)  # no role: refused
    except AiopsError:
        pass
    held = event("alert", id="k-held", risk="high")
    await aiops.events.send_many(commanded.id, [held])
    held_id = aiops.approvals.action_id(commanded.id, held.id)
    record_ = await eventually(
        lambda: aiops.approvals.action(held_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
    )
    action = aiops.approvals.action_handle(held_id)
    await action.signal(ActionMessages.abort, AbortRequest(reason="forged"))
    await aiops.agents.pause(commanded.id, key=oscar)
    credential = idp.token("erin", ["sre-team"], held_id, "approve", record_.plan_digest)
    await action.signal(ActionMessages.approve, {"approver": "erin", "credential": credential})
    await eventually(lambda: aiops.approvals.action(held_id), lambda r: r.status == ActionStatus.APPROVED)
    await action.signal(ActionMessages.release, HoldRequest(epoch=99))
    await eventually(
        lambda: aiops.audit.rows(action_id=held_id),
        lambda rows: sum(r.step == "command_refused" for r in rows) == 2,
    )
    await aiops.agents.resume(commanded.id, key=alice)
    await aiops.approvals.wait_for_action(held_id)
    await save(aiops, "action_confirmed_holds", held_id)
    try:
        await aiops.config.apply(commanded.model_copy(update={"name": "renamed"}), key=alice)  # sre: refused
    except AiopsError:
        pass
    await aiops.config.apply(commanded.model_copy(update={"name": "renamed"}), key=bob)
    await aiops.agents.stop(commanded.id, reason="recorded", key=bob)
    await handle.result()
    await save(aiops, "agent_signed_commands", agent_workflow_id(commanded.id))

    # An upgrade: a signed command continues the agent as new at the next safe point, its queue
    # carried (the first run is recorded: the request, the drained batch, the continue-as-new).
    upgraded = agent_config("recorder", id="replay-upgrade", approval=team({"bob": bob.public_key()}))
    first = await aiops.agents.start(upgraded)
    await eventually(lambda: aiops.agents.status(upgraded.id), lambda s: s.state == "running")
    await aiops.agents.pause(upgraded.id, key=bob)
    await aiops.events.send_many(upgraded.id, [event(id=f"u-{n}") for n in range(3)])
    await aiops.agents.command(upgraded.id, AgentVerb.UPGRADE, key=bob)
    await eventually(
        lambda: aiops.agents.status(upgraded.id), lambda s: s.run_number == 2 and s.queue_length == 3
    )
    await aiops.agents.stop(upgraded.id, key=bob)
    await aiops.agents.handle(upgraded.id).result()
    await save(aiops, "agent_upgrade", agent_workflow_id(upgraded.id), first.first_execution_run_id)

    # A long backlog: after 10 local-activity batches in one workflow task, the next batch is
    # decided by a regular activity, which ends the task.
    backlogged = agent_config("recorder", id="replay-backlog", runtime={"batch_size": 1})
    await aiops.agents.start(backlogged)
    await eventually(lambda: aiops.agents.status(backlogged.id), lambda s: s.state == "running")
    await aiops.agents.pause(backlogged.id)
    await aiops.events.send_many(backlogged.id, [event(id=f"b-{n}") for n in range(15)])
    await aiops.agents.resume(backlogged.id)
    await eventually(lambda: aiops.agents.status(backlogged.id), lambda s: s.counters.events_processed == 15)
    await aiops.agents.stop(backlogged.id)
    await aiops.agents.handle(backlogged.id).result()
    await save(aiops, "agent_bounded_task", agent_workflow_id(backlogged.id))

    # An agent whose initialization fails for good.
    config = agent_config("no_such_type", id="replay-failed", runtime={"worker_pickup_seconds": 1})
    failed = await aiops.agents.start(config, require_worker=False)
    try:
        await failed.result()
    except WorkflowFailureError:
        pass
    await save(aiops, "agent_failed_init", agent_workflow_id(config.id))


async def on_a_fresh_stack(record: Callable[[AiopsClient], Awaitable[None]], actor: str = "") -> None:
    """Run ``record`` against a fresh dev server, PostgreSQL and worker, as every recorder does."""
    load_agent_modules()
    HISTORIES.mkdir(exist_ok=True)
    database = PostgresServer()
    database.start()
    pool = await open_pool(database.url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL,
    )
    try:
        task_queue = f"record-{uuid.uuid4()}"
        async with build_worker(env.client, task_queue, AgentActivities(client=env.client), pool=pool):
            await record(AiopsClient(env.client, task_queue, pool, actor=actor))
    finally:
        await env.shutdown()
        await pool.close()
        database.close()


def recorder_main(record: Callable[[AiopsClient, str], Awaitable[None]], default_prefix: str) -> int:
    """A recorder's command line: ``python -m tests.record_X [PREFIX]``, on a fresh stack as bob."""
    prefix = sys.argv[1] if len(sys.argv) > 1 else default_prefix

    async def recorded(aiops: AiopsClient) -> None:
        await record(aiops, prefix)

    asyncio.run(on_a_fresh_stack(recorded, actor="bob"))
    return 0


async def main() -> int:
    global PREFIX
    PREFIX = sys.argv[1] if len(sys.argv) > 1 else ""
    if not PREFIX:
        raise SystemExit("usage: python -m tests.record_histories PREFIX (e.g. g1_)")
    await on_a_fresh_stack(record)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
