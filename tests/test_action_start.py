"""Actions started from the agent's worker (``activities/action_start.py``), not as children.

Real server. The start runs at least once (a local activity), so these check what makes that
safe: a repeated start with the same launch key is the same action, any other start of the same
id is a duplicate (also after the action ended), and a request the server refuses is answered,
not retried for ever. And end to end: the agent's actions have no parent, name their agent in
their input, and still confirm holds with it.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from activities.action_start import ActionStarter, eagerly_started
from activities.first_activation import FirstActivations
from aiops.client import AiopsClient
from aiops.contracts import search_attributes as sa
from aiops.contracts.action import WORKFLOW_TYPE, ActionInput, ActionStatus
from aiops.contracts.action_start import LAUNCH_MEMO, ActionStart
from aiops.contracts.agent import agent_workflow_id, hooks_task_queue
from aiops.contracts.models import ActionType, AgentAction, RiskLevel
from aiops.contracts.policy import Outcome, PolicyDecision
from aiops.runtime.activation_memory import detached_runner
from tests.helpers import agent_config, event, eventually
from workflows.action.workflow import ActionWorkflow


def a_start(task_queue: str, key: str, workflow_id: str | None = None) -> ActionStart:
    config = agent_config("recorder")
    workflow_id = workflow_id or f"action-start-test-{uuid.uuid4().hex[:8]}"
    action = AgentAction(
        id=workflow_id,
        agent_id=config.id,
        type=ActionType.RUN_COMMAND,
        description="wait for a person",
        risk_level=RiskLevel.HIGH,
    )
    decision = PolicyDecision(outcome=Outcome.REQUIRE_APPROVAL, reason="test", required_approvals=1)
    input = ActionInput(
        action=action,
        event=event(),
        config=config,
        agent_workflow_id=agent_workflow_id(config.id),
        decision=decision,
        launch="client",
    )
    return ActionStart(
        input=input,
        workflow_id=workflow_id,
        task_queue=hooks_task_queue(task_queue, "recorder"),
        priority_key=2,
        requested_at=datetime.now(UTC),
        inbox_summary="a test action",
        static_summary="a test action",
        static_details="started by tests/test_action_start.py",
        launched_by=key,
    )


async def test_a_repeated_start_is_the_same_action_and_another_is_a_duplicate(
    client: Client, task_queue: str
) -> None:
    # No worker polls the queue: the action waits for its first task, so ending it by hand
    # cannot cut a task short.
    starter = ActionStarter(client)
    start = a_start(task_queue, "agent-mine")
    assert (await starter.start_action(start)).outcome == "started"
    assert (await starter.start_action(start)).outcome == "started"  # the activity run again
    other = start.model_copy(update={"launched_by": "agent-another"})
    duplicate = await starter.start_action(other)
    assert duplicate.outcome == "duplicate" and start.workflow_id in duplicate.reason
    handle = client.get_workflow_handle(start.workflow_id)
    described = await handle.describe()
    assert await described.memo_value(LAUNCH_MEMO) == "agent-mine"
    assert described.parent_id is None
    ids = [w.run_id async for w in client.list_workflows(f"WorkflowId = '{start.workflow_id}'")]
    assert len(ids) == 1, "one workflow, however often the start ran"
    await handle.terminate("done with it")
    # After it ended, REJECT_DUPLICATE still keeps the id: its own start is still told apart.
    again = await starter.start_action(start)
    # Closed without a final status of its own: failed, so its agent does not wait for it for ever.
    assert again.outcome == "started" and again.ended is not None
    assert again.ended.status == ActionStatus.FAILED and "terminated" in again.ended.message
    assert (await starter.start_action(other)).outcome == "duplicate"


async def test_a_start_the_server_refuses_is_answered_not_retried(client: Client, task_queue: str) -> None:
    start = a_start(task_queue, "agent-mine").model_copy(update={"task_queue": "q" * 2000})
    refused = await ActionStarter(client).start_action(start)
    assert refused.outcome == "refused" and "refused the start" in refused.reason
    assert (await ActionStarter(None).start_action(start)).outcome == "unavailable"


async def test_the_agent_starts_its_actions_from_its_worker(aiops: AiopsClient, worker) -> None:
    """No child: the action has no parent and the agent's history no child events; it runs all the
    same, and the agent counts it (holds are confirmed with the agent the input names, which
    ``tests/test_approvals.py`` covers on this path)."""
    config = agent_config("recorder")
    await aiops.agents.start(config)
    e = event(act=True)
    await aiops.events.send(config.id, e)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 1)
    action_id = aiops.approvals.action_id(config.id, e.id)
    described = await aiops.client.get_workflow_handle(action_id).describe()
    assert described.parent_id is None
    assert await described.memo_value(LAUNCH_MEMO, default=None), "started by the agent's start_action"
    agent = aiops.client.get_workflow_handle(agent_workflow_id(config.id))
    kinds = {e.event_type async for e in agent.fetch_history_events()}
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in kinds
    assert EventType.EVENT_TYPE_MARKER_RECORDED in kinds
    status = await aiops.agents.status(config.id)
    assert status.counters.actions_proposed == 1 and status.counters.actions_duplicate == 0


async def test_a_repeated_start_tells_an_end_reported_before_the_action_closed(
    client: Client, task_queue: str
) -> None:
    """The wedge this guards against: the agent's task that ran the start fails after the start;
    the action runs, upserts its final status and signals its end, and stays open a moment (it
    settles its notices and audit). The agent's task run again takes that signal before it knows
    the action is its own (no pending action: the end is dropped), then starts again and meets
    "already started". The answer must carry the end, or the action stays pending for ever."""
    start = a_start(task_queue, "agent-mine")
    # The action as it is between reporting its end and closing: its final status published, open
    # (no worker polls the queue, so it stays open).
    await client.start_workflow(
        WORKFLOW_TYPE,
        start.input,
        id=start.workflow_id,
        task_queue=start.task_queue,
        memo={LAUNCH_MEMO: "agent-mine"},
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.ACTION_STATUS, "succeeded")]),
    )
    again = await ActionStarter(client).start_action(start)
    assert again.outcome == "started"
    assert again.ended is not None, "an end already reported must reach the agent with the start"
    assert again.ended.status == ActionStatus.SUCCEEDED and again.ended.success
    # An action still under way carries no end: the agent waits for its signal.
    other = a_start(task_queue, "agent-mine")
    assert (await ActionStarter(client).start_action(other)).outcome == "started"
    assert (await ActionStarter(client).start_action(other)).ended is None
    for workflow_id in (start.workflow_id, other.workflow_id):
        await client.get_workflow_handle(workflow_id).terminate("done with it")


async def test_an_action_that_runs_at_once_upserts_nothing_before_execute(aiops: AiopsClient, worker) -> None:
    """Started showing ``executing`` (``status_at_start``), an action that runs at once schedules
    execute in its first task with no search attribute upsert before it: on the dev server such an
    upsert made the server hand execute over about 3 ms later (bench/upsert_probe.py). One that
    waits for approval is started ``proposed`` and shows ``pending_approval`` while it waits."""
    config = agent_config("recorder")
    await aiops.agents.start(config)
    at_once, waits = event(act=True), event(act=True, risk="high")
    await aiops.events.send_many(config.id, [at_once, waits])
    quick = aiops.approvals.action_id(config.id, at_once.id)
    assert (await aiops.approvals.wait_for_action(quick)).status == ActionStatus.SUCCEEDED
    events = [e async for e in aiops.client.get_workflow_handle(quick).fetch_history_events()]
    started = events[0].workflow_execution_started_event_attributes.search_attributes.indexed_fields
    assert started["AiopsActionStatus"].data == b'"executing"'
    execute = next(
        i
        for i, e in enumerate(events)
        if e.activity_task_scheduled_event_attributes.activity_type.name == "execute_action"
    )
    kinds = [e.event_type for e in events[:execute]]
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1, "scheduled by its first task"
    described = await aiops.client.get_workflow_handle(quick).describe()
    assert described.typed_search_attributes.get(sa.ACTION_STATUS) == "succeeded"
    slow = aiops.approvals.action_id(config.id, waits.id)
    await eventually(
        lambda: aiops.approvals.action(slow), lambda r: r.status == ActionStatus.PENDING_APPROVAL
    )
    handle = aiops.client.get_workflow_handle(slow)
    first = await anext(handle.fetch_history_events())
    assert (
        first.workflow_execution_started_event_attributes.search_attributes.indexed_fields[
            "AiopsActionStatus"
        ].data
        == b'"proposed"'
    )
    await eventually(
        handle.describe, lambda d: d.typed_search_attributes.get(sa.ACTION_STATUS) == "pending_approval"
    )


class RecordingFirstActivations(FirstActivations):
    """What the runner told, in order: the ids whose first activation was computed."""

    def __init__(self) -> None:
        super().__init__(wait=timedelta(seconds=10))  # the mechanism, not the bound: never the bound here
        self.told: list[str] = []
        self.waited: list[bool] = []  # a start waits only after an eager start

    def computed(self, workflow_id: str) -> None:
        self.told.append(workflow_id)
        super().computed(workflow_id)

    async def computed_in_time(self, future: asyncio.Future[None]) -> bool:
        in_time = await super().computed_in_time(future)
        self.waited.append(in_time)
        return in_time


class CancelledWhileWaiting(FirstActivations):
    async def computed_in_time(self, future: asyncio.Future[None]) -> bool:
        raise asyncio.CancelledError


async def test_an_eager_start_answers_after_the_actions_first_activation(
    client: Client, task_queue: str
) -> None:
    """The action's first task then reaches the server before the agent's (activities/
    first_activation.py). A start that is not eager (no worker on the queue in this process)
    waits for nothing; a run nobody waits for is not watched."""
    first = RecordingFirstActivations()
    start = a_start(task_queue, "agent-mine")
    starter = ActionStarter(client, first)
    not_eager = await starter.start_action(start)
    assert not_eager.outcome == "started" and first.told == [] and not first.awaited(start.workflow_id)
    await client.get_workflow_handle(start.workflow_id).terminate("done with it")

    eager = a_start(task_queue, "agent-mine")
    actions = Worker(
        client,
        task_queue=eager.task_queue,
        workflows=[ActionWorkflow],
        activities=[],
        workflow_runner=detached_runner(first_activations=first),
    )
    async with actions:
        unwatched = a_start(task_queue, "agent-mine")
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            unwatched.input,
            id=unwatched.workflow_id,
            task_queue=unwatched.task_queue,
            request_eager_start=True,
        )
        assert eagerly_started(handle), "the SDK's flag for an eager start is still on its handle"
        # Its first task also warms the worker (a cold first activation can take longer than the
        # start's bound, and the start then answers without it, as it should).
        await first_task_in(client, unwatched.workflow_id)
        assert (await starter.start_action(eager)).outcome == "started"
        assert first.told == [eager.workflow_id], "told before the start answered, and only of it"
        assert first.waited == [True] and not first.awaited(eager.workflow_id)
        # A cancel during the wait comes after the start: the answer still says started.
        cancelled = a_start(task_queue, "agent-mine")
        answer = await ActionStarter(client, CancelledWhileWaiting()).start_action(cancelled)
        assert answer.outcome == "started"
        await first_task_in(client, cancelled.workflow_id)
        await client.get_workflow_handle(cancelled.workflow_id).terminate("done with it")
        # Ended once its first task is in: a terminate during a task force-closes that task.
        await first_task_in(client, eager.workflow_id)
        for workflow_id in (eager.workflow_id, unwatched.workflow_id):
            await client.get_workflow_handle(workflow_id).terminate("done with it")


async def first_task_in(client: Client, workflow_id: str) -> None:
    await eventually(functools.partial(first_task_completed, client, workflow_id), lambda done: done)


async def first_task_completed(client: Client, workflow_id: str) -> bool:
    async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return True
    return False


async def test_the_workers_runner_tells_the_workers_own_starts(
    aiops: AiopsClient, worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build_worker`` gives its action starter and its runner one ``FirstActivations``: were
    they two, every eager start would wait its whole bound, told by nobody. The start here waits
    up to 10 s, so the test needs no timing: it is told, or it fails."""
    waited: list[tuple[int, bool]] = []
    expected: dict[str, int] = {}
    expect = FirstActivations.expect

    def recording_expect(self: FirstActivations, workflow_id: str) -> asyncio.Future[None]:
        expected[workflow_id] = id(self)
        return expect(self, workflow_id)

    async def patient(self: FirstActivations, future: asyncio.Future[None]) -> bool:
        await asyncio.wait([future], timeout=10)
        waited.append((id(self), future.done()))
        return future.done()

    monkeypatch.setattr(FirstActivations, "expect", recording_expect)
    monkeypatch.setattr(FirstActivations, "computed_in_time", patient)
    config = agent_config("recorder")
    await aiops.agents.start(config)
    e = event(act=True)
    await aiops.events.send(config.id, e)
    action_id = aiops.approvals.action_id(config.id, e.id)
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.SUCCEEDED
    assert waited == [(expected[action_id], True)], "the eager start was told by the worker's runner"
