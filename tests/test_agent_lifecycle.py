"""The agent entity workflow: start, process, pause/resume, stop, and failed initialization."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from aiops.client import AgentNotRunningError, AgentTypeNotServedError, AiopsClient, ConfigRefusedError
from aiops.contracts.action import ActionStatus
from aiops.contracts.agent import AgentState
from tests.helpers import agent_config, event, eventually


async def test_drift_event_becomes_an_executed_action(aiops: AiopsClient, worker) -> None:
    config = agent_config("example")
    await aiops.agents.start(config)
    drift = event(severity="low", resources=["aws_vpc.main", "aws_subnet.a"])
    await aiops.events.send(config.id, drift)

    action_id = aiops.approvals.action_id(config.id, drift.id)
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.SUCCEEDED
    assert record.result is not None and record.result.success
    assert "aws_vpc.main" in record.result.message
    assert record.plan is not None and "2 resource(s)" in record.plan.summary

    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 1
    )
    assert status.state == AgentState.RUNNING
    assert status.counters.events_received == 1
    assert status.counters.events_processed == 1
    assert status.counters.actions_proposed == 1
    assert status.pending_actions == []
    assert status.success_rate == 1.0


async def test_pause_holds_events_and_resume_processes_them(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.RUNNING)
    await aiops.agents.pause(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == AgentState.PAUSED)
    for _ in range(3):
        await aiops.events.send(config.id, event())
    paused = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_received == 3
    )
    assert paused.counters.events_processed == 0
    assert paused.queue_length == 3

    await aiops.agents.resume(config.id)
    resumed = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 3
    )
    assert resumed.state == AgentState.RUNNING
    assert resumed.queue_length == 0


async def test_stop_drains_the_queue_then_stops(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    handle = await aiops.agents.start(config)
    await aiops.agents.pause(config.id)
    await aiops.events.send_many(config.id, [event() for _ in range(5)])
    await aiops.agents.stop(config.id, reason="maintenance")
    summary = await handle.result()
    assert summary.state == AgentState.STOPPED
    assert summary.unprocessed_events == []
    status = await aiops.agents.status(config.id)
    assert status.state == AgentState.STOPPED
    assert status.counters.events_processed == 5

    with pytest.raises(AgentNotRunningError, match="no agent named"):
        await aiops.agents.pause("no-such-agent")


async def test_a_type_no_worker_serves_is_refused_at_once(aiops: AiopsClient, worker) -> None:
    config = agent_config("no_such_type")
    with pytest.raises(AgentTypeNotServedError, match="no worker serves agent type 'no_such_type'"):
        await aiops.agents.start(config)
    with pytest.raises(AgentTypeNotServedError):
        await aiops.events.send(config.id, event(), config=config)
    assert not await aiops.agents.is_running(config.id)


async def test_an_agent_started_anyway_fails_saying_no_worker_serves_its_type(
    aiops: AiopsClient, worker
) -> None:
    # As a raw `temporal workflow start` would: nothing polls the type's queue, so start fails.
    config = agent_config("no_such_type", runtime={"worker_pickup_seconds": 1})
    handle = await aiops.agents.start(config, require_worker=False)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "no worker serves agent type 'no_such_type'" in str(failure.value.cause)
    status = await aiops.agents.status(config.id)
    assert status.state == AgentState.FAILED
    assert "--agent-module" in (status.failure or "")


async def test_invalid_config_for_the_type_fails_initialization(aiops: AiopsClient, worker) -> None:
    config = agent_config("init_fails")
    with pytest.raises(ConfigRefusedError, match=r"settings\.endpoint is required"):
        await aiops.agents.start(config)  # the client asks the type first: nothing is started
    handle = await aiops.agents.start(config, require_worker=False)  # the workflow's own check
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "settings.endpoint is required" in str(failure.value.cause)


async def test_an_invalid_start_input_fails_the_agent_with_the_problems_named(
    client, worker, task_queue: str
) -> None:
    """What `temporal workflow start --input '{...}'` with a bad config does: a clear failure,
    not a workflow task retried for ever (and the literal secret is not echoed)."""
    handle = await client.start_workflow(
        "AgentWorkflow",
        {"config": {"id": "raw-cli", "name": "x", "type": "example", "colour": "blue",
                    "integrations": [{"name": "v", "type": "vault", "config": {"token": "SUPERSECRET"}}]}},
        id=f"agent-raw-cli-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
    )  # fmt: skip
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    message = str(failed.value.cause)
    assert "invalid agent start input" in message
    assert "config.colour" in message and "config.integrations.0" in message
    assert "SUPERSECRET" not in message
