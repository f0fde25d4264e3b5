"""An action whose workflow is closed from outside (terminated by hand) is not pending for ever.

Such an action reports nothing to its agent. The health monitor's pass finds it in visibility and
tells its agent; the agent asks the server how the action stands (never the claim's word) and
counts it failed, once, however often it is told (activities/action_ends.py).
"""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from aiops.client import AiopsClient
from aiops.contracts.action import ActionOutcome, ActionStatus
from aiops.contracts.agent import ACTION_FINISHED, AgentMessages, agent_workflow_id
from tests.helpers import agent_config, eventually, start_pending_action, team, temporal_cli
from workflows.health_monitor import (
    INVALID_MONITOR_INPUT,
    HealthMonitorWorkflow,
    MonitorInput,
    MonitorReport,
)


async def test_a_terminated_action_is_counted_failed_by_its_agent_after_a_monitor_pass(
    aiops: AiopsClient, client: Client, address: str, task_queue: str, worker: object
) -> None:
    config = agent_config("scripted", approval=team())
    agent, action_id, _ = await start_pending_action(aiops, config, "high")
    other = agent_config("scripted", approval=team())  # its action stays open: left alone
    _, open_id, _ = await start_pending_action(aiops, other, "high")

    # A claim before the action closed is refused: the action says it is still waiting.
    forged = ActionOutcome(action_id=action_id, event_id="", status=ActionStatus.FAILED)
    await agent.signal(ACTION_FINISHED, forged)
    status = await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: any(ACTION_FINISHED in e.message for e in s.recent_errors),
    )
    assert status.counters.actions_failed == 0
    assert [p.action_id for p in await agent.query(AgentMessages.pending_actions)] == [action_id]

    await client.get_workflow_handle(action_id).terminate("stuck, ended by hand")

    async def check() -> MonitorReport:
        return await client.execute_workflow(
            HealthMonitorWorkflow.run,
            MonitorInput(task_queue=task_queue),
            id=f"health-{uuid.uuid4()}",
            task_queue=task_queue,
        )

    # Visibility is eventually consistent: a pass soon after sees the closed action.
    report = await eventually(check, lambda r: action_id in r.unreported_ends.action_ids)
    assert open_id not in report.unreported_ends.action_ids
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_failed == 1
    )
    assert await agent.query(AgentMessages.pending_actions) == []
    assert status.consecutive_failures == 1

    # Told again by the next pass (it looks an hour back): counted once. The signal was taken when
    # the pass ended, and a query sees every signal taken before it. This pass is started the way
    # docs/operations.md says, to look further back.
    monitor_id = f"health-{uuid.uuid4()}"
    wide = json.dumps({"task_queue": task_queue, "unreported_within_seconds": 604800})
    started = temporal_cli(
        address, "workflow", "start", "--type", "HealthMonitorWorkflow", "--task-queue", task_queue,
        "--workflow-id", monitor_id, "--input", wide,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    again = MonitorReport.model_validate(await client.get_workflow_handle(monitor_id).result())
    assert action_id in again.unreported_ends.action_ids
    assert (await aiops.agents.status(config.id)).counters.actions_failed == 1
    other_handle = client.get_workflow_handle(agent_workflow_id(other.id))
    assert [p.action_id for p in await other_handle.query(AgentMessages.pending_actions)] == [open_id]
    await aiops.approvals.reject(open_id, "bob", "not now")


async def test_a_pass_started_by_hand_with_a_bad_input_fails_at_once_saying_why(
    client: Client, address: str, task_queue: str, worker: object
) -> None:
    """The docs show starting a pass by hand with --input: a typo must end the run with the reason,
    not fail its workflow task for ever."""
    for bad, said in (
        ({"task_queue": task_queue, "unreported_within_seconds": -1}, "unreported_within_seconds"),
        ({"unreported_within_seconds": 60}, "task_queue"),
        ([1, 2], "MonitorInput"),
    ):
        monitor_id = f"health-{uuid.uuid4()}"
        started = temporal_cli(
            address, "workflow", "start", "--type", "HealthMonitorWorkflow", "--task-queue", task_queue,
            "--workflow-id", monitor_id, "--input", json.dumps(bad),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        with pytest.raises(WorkflowFailureError) as failed:
            await client.get_workflow_handle(monitor_id).result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == INVALID_MONITOR_INPUT, cause
        assert cause.message.startswith("invalid health monitor input: ") and said in cause.message
        assert "\n" not in cause.message
