"""An agent's start, and the steps an action skips, against the real dev server and PostgreSQL.

An agent registers its config and runs its initialize hook in one local activity on the worker
that has its type (two activity round trips fewer per start); where that worker does not have the
type, or the database or the hook fails there, the usual activities do it, with their retries. An
agent type without a plan hook has no dry run, so its actions skip the plan step; one with a plan
hook plans in a local activity where the action's worker has the type, else on the type's queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.agent_activities import AgentActivities
from activities.agent_instances import AgentInstances
from activities.audit_activities import AuditActivities
from activities.config_activities import ConfigActivities
from activities.database.audit_log import AuditLog
from activities.database.config_store import ConfigStore
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.activities import ConfigProposal, StartAgentCall
from aiops.contracts.agent import AgentState, hooks_task_queue
from aiops.runtime.activation_memory import detached_runner
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually, wait_pending
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer
from workflows.action.workflow import ActionWorkflow


async def scheduled_activities(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def local_activities(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    names = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            data = e.marker_recorded_event_attributes.details.get("data")
            if data is not None and data.payloads:
                names.append(json.loads(data.payloads[0].data).get("activity_type", ""))
    return names


async def local_answers(client: Client, workflow_id: str, activity_type: str) -> list[dict[str, object]]:
    """What the local activities of that type answered, as recorded in their markers."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    answers = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = e.marker_recorded_event_attributes.details
            data = details.get("data")
            if data is not None and data.payloads and activity_type in data.payloads[0].data.decode():
                answers.append(json.loads(details["result"].payloads[0].data))
    return answers


async def test_an_agent_registers_and_initializes_in_one_local_activity(
    aiops: AiopsClient, client: Client, worker
) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    assert status.config_version == 1  # registered in the config store
    assert (await aiops.config.history(config.id))[0].version == 1
    workflow_id = aiops.agents.handle(config.id).id
    assert "start_agent" in await local_activities(client, workflow_id)
    # Stored as it was: the answer (kept by the worker while the agent is idle) is the number alone.
    [answer] = await local_answers(client, workflow_id, "start_agent")
    assert answer["stored_version"] == 1 and answer["stored"] is None, answer
    # The local activity wrote the started row too: an agent's start schedules no activity at all.
    assert answer["audited"] is True, answer
    assert await scheduled_activities(client, workflow_id) == []
    rows = await aiops.audit.rows(agent_id=config.id)
    [started] = [r for r in rows if r.step == "agent_lifecycle" and r.detail["state"] == "started"]
    run_id = (await aiops.agents.handle(config.id).describe()).run_id
    assert started.key == f"{config.id}/{run_id}:started:0", started  # the outbox's key for it
    assert started.detail["config_version"] == 1
    assert (await aiops.audit.verify(config.id))[0].ok
    scheduled = await scheduled_activities(client, workflow_id)
    assert "register_config" not in scheduled and "initialize_agent" not in scheduled
    # The agent works as before: an event decided, its action run.
    drift = event(act=True)
    await aiops.events.send(config.id, drift)
    done = await asyncio.wait_for(
        aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, drift.id)), 60
    )
    assert done.status == ActionStatus.SUCCEEDED


async def test_a_started_row_the_start_cannot_write_is_left_to_the_workflow(
    postgres: PostgresServer, pool: asyncpg.Pool
) -> None:
    """The start writes its started row where it can, with the version the store gave; with the
    database gone it answers not audited, and the workflow's outbox writes the row, retrying."""
    config = agent_config("recorder")
    proposal = ConfigProposal(config=config, author="t")
    call = StartAgentCall(config=config, proposal=proposal, started_sequence=3, started_by="alice")

    async def start(database: asyncpg.Pool) -> bool:
        instances = AgentInstances()
        activities = AgentActivities(instances, audit=AuditLog(database))
        activities.register = ConfigActivities(ConfigStore(pool), instances).register_config
        local = ActivityEnvironment()  # a local activity's context: 60 s from now, as the workflow gives
        local.info = dataclasses.replace(
            local.info,
            workflow_run_id="run-1",
            started_time=datetime.now(UTC),
            start_to_close_timeout=timedelta(seconds=60),
        )
        started = await local.run(activities.start_agent, call)
        assert started.registered and started.initialized is not None and started.stored_version == 1
        return started.audited

    gone = await asyncpg.create_pool(postgres.url, min_size=1, max_size=1)
    await gone.close()
    assert await start(gone) is False
    assert await AuditLog(pool).rows(agent_id=config.id) == []
    assert await start(pool) is True
    [written] = await AuditLog(pool).rows(agent_id=config.id)
    # The key the workflow's outbox gives the same row (aiops/contracts/audit_rows.py): never twice.
    assert (written.key, written.actor) == (f"{config.id}/run-1:started:3", "alice")
    assert written.detail == {"state": "started", "config_version": 1}


async def test_a_start_that_could_not_write_its_row_has_the_outbox_write_it_once(
    client: Client, task_queue: str, postgres: PostgresServer, pool: asyncpg.Pool
) -> None:
    """The start's own write fails (its audit log's pool is closed; the config store and the
    outbox's ``record_audit`` have the database): the agent still starts, and its started row
    lands once, with the version the store gave, by the usual activity."""
    gone = await asyncpg.create_pool(postgres.url, min_size=1, max_size=1)
    await gone.close()
    activities = AgentActivities(client=client, audit=AuditLog(gone))
    aiops = AiopsClient(client, task_queue, pool)
    async with build_worker(client, task_queue, activities, pool=pool):
        config = agent_config("recorder")
        await aiops.agents.start(config)
        await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
        workflow_id = aiops.agents.handle(config.id).id
        [answer] = await local_answers(client, workflow_id, "start_agent")
        assert answer["audited"] is False and answer["initialized"] is not None, answer
        rows = await eventually(
            lambda: aiops.audit.rows(agent_id=config.id),
            lambda rs: any(r.step == "agent_lifecycle" for r in rs),
        )
        [started] = [r for r in rows if r.step == "agent_lifecycle" and r.detail["state"] == "started"]
        assert started.detail["config_version"] == 1
        assert "record_audit" in await scheduled_activities(client, workflow_id)
        await aiops.agents.stop(config.id, reason="done")


async def test_what_the_local_start_cannot_do_is_done_by_the_usual_activities(
    aiops: AiopsClient, client: Client, worker
) -> None:
    """The init_fails type's hook fails: the local start leaves it to the initialize activity,
    whose retries and failure are what they always were."""
    config = agent_config("init_fails", runtime={"local_decisions": True})
    # require_worker=False: past the client's config check (which refuses this config up front), to
    # reach the workflow's own start path
    handle = await aiops.agents.start(config, require_worker=False)
    try:
        await asyncio.wait_for(handle.result(), 120)
    except Exception:
        pass
    workflow_id = handle.id
    assert "start_agent" in await local_activities(client, workflow_id)
    scheduled = await scheduled_activities(client, workflow_id)
    assert "initialize_agent" in scheduled  # the usual path, after the local one failed
    assert "register_config" not in scheduled  # registered by the local one
    assert (await aiops.agents.status(config.id)).state == AgentState.FAILED


async def test_an_agent_type_without_a_plan_hook_skips_the_plan_step(
    aiops: AiopsClient, client: Client, worker
) -> None:
    without, with_plan = agent_config("recorder"), agent_config("scripted")
    planless, planned = event(act=True), event("alert", risk="low")
    await aiops.events.send(without.id, planless, config=without)
    await aiops.events.send(with_plan.id, planned, config=with_plan)
    a = await asyncio.wait_for(
        aiops.approvals.wait_for_action(aiops.approvals.action_id(without.id, planless.id)), 60
    )
    b = await asyncio.wait_for(
        aiops.approvals.wait_for_action(aiops.approvals.action_id(with_plan.id, planned.id)), 60
    )
    assert a.status == ActionStatus.SUCCEEDED and a.plan is None
    assert ActionStatus.PLANNING not in [h.status for h in a.history]
    assert "plan_action" not in await scheduled_activities(
        client, aiops.approvals.action_id(without.id, planless.id)
    )
    assert b.plan is not None and b.plan_digest and ActionStatus.PLANNING in [h.status for h in b.history]
    # The worker running the action's task has the type: the dry run is a local activity there.
    planned_id = aiops.approvals.action_id(with_plan.id, planned.id)
    assert "plan_action_here" in await local_activities(client, planned_id)
    assert "plan_action" not in await scheduled_activities(client, planned_id)
    assert a.action.id in LEDGER["executed"]
    # An action that waits for a person plans by activity: its timeline shows the step's summary.
    risky = event("alert", risk="high")
    await aiops.events.send(with_plan.id, risky)
    pending = await wait_pending(aiops, aiops.approvals.action_id(with_plan.id, risky.id))
    assert pending.plan is not None
    assert "plan_action" in await scheduled_activities(client, pending.action.id)
    assert "plan_action_here" not in await local_activities(client, pending.action.id)


async def test_an_action_plans_on_the_types_queue_when_its_worker_lacks_the_type(
    client: Client, task_queue: str, pool: asyncpg.Pool
) -> None:
    """The worker running the action's workflow task serves no scripted code (its local plan is a
    worker's without the type); only the type's hook activities do. The local plan leaves it to the
    usual activity, and the action runs as before."""
    plain = AgentActivities(client=client, agent_types=["example"])
    scripted = AgentActivities(client=client, agent_types=["scripted"])
    aiops = AiopsClient(client, task_queue, pool)
    without_the_type = [plain.plan_action_here, plain.agent_hold_state, plain.action_outcome]
    async with (
        build_worker(client, task_queue, plain, pool=pool),
        Worker(
            client,
            task_queue=hooks_task_queue(task_queue, "scripted"),  # where the type's actions run
            workflows=[ActionWorkflow],
            activities=[*scripted.hooks(), *without_the_type, *AuditActivities(AuditLog(pool)).all()],
            workflow_runner=detached_runner(),
        ),
    ):
        config = agent_config("scripted")
        alert = event("alert", risk="low")
        await aiops.events.send(config.id, alert, config=config)
        action_id = aiops.approvals.action_id(config.id, alert.id)
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id, appear_within=30), 60)
        assert record.status == ActionStatus.VERIFIED, record.error
        assert record.plan is not None and record.plan.summary.startswith("would run")
        assert "plan_action_here" in await local_activities(client, action_id)
        assert "plan_action" in await scheduled_activities(client, action_id)
        assert plain.instances.cached(config.id) is None  # no scripted code ran on the plain worker
        await aiops.agents.stop(config.id)
