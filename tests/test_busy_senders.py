"""Events sent by signal when every update slot of the agent is taken (real dev server).

The server admits a number of in-flight updates per workflow (``history.maxInFlightUpdates``, 10
by default) and refuses more with ``RESOURCE_EXHAUSTED``; each refusal also clears the
workflow's update registry, aborting the updates in flight, so many independent senders get
almost nothing through (docs/scale.md, "Independent senders"). This module's own dev server
admits one update in flight per workflow (``history.maxInFlightUpdates=1``) and the test holds
it: an intake update to an agent with no worker yet waits, and is sent again the moment a
refusal of another aborts it, so every other intake update is refused, for real, as a full
agent refuses it. ``events.send`` must still deliver: by the ``submit_events`` signal, answered
``queued``, and decided by the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import Input, Meta, WaitPolicy
from temporalio.api.update.v1 import Request as UpdateRequest
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from aiops.client import AiopsClient
from aiops.client.busy_signal import QUEUED_REASON
from aiops.client.errors import EventsRejectedError
from aiops.contracts.agent import EventOutcome, IntakeRequest, agent_workflow_id
from aiops.runtime.worker_build import build_worker
from tests.conftest import start_dev_server
from tests.helpers import agent_config, event, eventually, gone, start_without_worker, team, wait_pending

ACCEPTED = UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED


# The stuck-task guard (tests/conftest.py) checks this module's own server too.
OWN_DEV_SERVER = "full"


@pytest_asyncio.fixture(scope="module")
async def full() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that admits one update in flight per workflow: held (``Holder``), the agent's
    only slot is taken."""
    environment = await start_dev_server("history.maxInFlightUpdates=1")
    try:
        yield environment
    finally:
        await environment.shutdown()


class Holder:
    """Holds the agent's one update slot: an intake update with nothing to answer it (no worker
    yet), sent the raw way (no SDK repeats) and again the moment a refusal of another aborts it."""

    def __init__(self, client: Client, agent_id: str) -> None:
        self.client, self.agent_id = client, agent_id
        self.task: asyncio.Task[None] | None = None

    async def _update(self, update_id: str, seconds: float) -> None:
        [payload] = await self.client.data_converter.encode(
            [IntakeRequest(events=[event(id="slot").model_dump(mode="json")])]
        )
        request = UpdateWorkflowExecutionRequest(
            namespace=self.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=agent_workflow_id(self.agent_id)),
            request=UpdateRequest(
                meta=Meta(update_id=update_id, identity="test"),
                input=Input(name="intake", args=Payloads(payloads=[payload])),
            ),
            wait_policy=WaitPolicy(lifecycle_stage=ACCEPTED),
        )
        await self.client.workflow_service.update_workflow_execution(
            request, retry=False, timeout=timedelta(seconds=seconds)
        )

    async def _hold(self) -> None:
        while True:
            with contextlib.suppress(RPCError):
                await self._update(f"slot-{uuid.uuid4()}", 300)

    async def __aenter__(self) -> Holder:
        self.task = asyncio.create_task(self._hold())
        for _ in range(200):  # until a probe is refused: the slot is held
            try:
                await self._update(f"probe-{uuid.uuid4()}", 0.2)
            except RPCError as err:
                if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
                    return self
        raise AssertionError("the server never refused an update past the held one")

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_a_send_to_an_agent_whose_update_slots_are_taken_goes_by_signal_and_is_decided(
    full: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    """Refused an update slot (after the SDK's own repeats), the event goes by signal and is
    answered ``queued``. The agent stays busy for this client a while: the next batch goes by
    signal at once, with its config by signal-with-start (the running agent gets it, no second
    agent); a malformed event in it is answered ``rejected`` and not sent. The agent decides
    what was queued (each risky alert's action waits for approval), each event once."""
    client = full.client
    config = agent_config("scripted", approval=team())
    aiops = AiopsClient(client, task_queue, pool, actor="bob")
    await start_without_worker(client, config, task_queue)
    try:
        async with Holder(client, config.id):
            risky = event("alert", risk="high")
            answer = await asyncio.wait_for(aiops.events.send(config.id, risky), 90)
            assert answer.outcome == EventOutcome.QUEUED and answer.event_id == risky.id
            assert answer.reason == QUEUED_REASON

            second = event("alert", risk="high")
            with pytest.raises(EventsRejectedError) as refused:
                await asyncio.wait_for(  # no update tried: straight to the signal
                    aiops.events.send_many(
                        config.id,
                        [second, {"type": "alert", "source": "no id"}],
                        config,
                        require_worker=False,
                    ),
                    5,
                )
            answers = refused.value.answers
            assert [a.outcome for a in answers] == [EventOutcome.QUEUED, EventOutcome.REJECTED]
            assert "id: field required" in answers[1].reason

        async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
            for sent in (risky, second):
                await wait_pending(aiops, aiops.approvals.action_id(config.id, sent.id))
            status = await eventually(
                lambda: aiops.agents.status(config.id), lambda s: s.counters.events_received >= 2
            )
            assert status.run_number == 1  # signal-with-start found the running agent
            # The malformed event never reached the agent; what did is counted once.
            assert status.counters.events_rejected == 0
            assert status.counters.events_deduplicated == 0
    finally:
        await gone(client, config)


async def test_a_sender_that_needs_the_agents_own_answer_keeps_to_the_update(
    full: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    """``signal_when_busy=False``: the refused update is not turned into a signal; past its
    patience the sender gets the server's refusal, and nothing was sent."""
    client = full.client
    config = agent_config("example")
    aiops = AiopsClient(client, task_queue, pool, actor="bob")
    handle = await start_without_worker(client, config, task_queue)
    try:
        async with Holder(client, config.id):
            with pytest.raises(RPCError) as refused:
                await asyncio.wait_for(
                    aiops.events.submit(
                        config.id, [event("alert")], patience_seconds=0, signal_when_busy=False
                    ),
                    90,
                )
        assert refused.value.status == RPCStatusCode.RESOURCE_EXHAUSTED
        history = [e async for e in handle.fetch_history_events()]
        assert not any(e.HasField("workflow_execution_signaled_event_attributes") for e in history)
    finally:
        await gone(client, config)


async def test_a_cancelled_send_stops_at_once(client: Client, task_queue: str, pool: asyncpg.Pool) -> None:
    """The SDK reports the caller's cancellation of an update as
    ``WorkflowUpdateRPCTimeoutOrCancelledError``, the error of an update the server did not answer
    in time, which the sender sends again until its patience is spent: a cancelled send (a
    caller's timeout, a gateway request gone, a shutdown) went on for up to that patience. It
    now stops when cancelled."""
    config = agent_config("example")
    aiops = AiopsClient(client, task_queue, pool, actor="bob")
    handle = await start_without_worker(client, config, task_queue)
    try:
        sending = asyncio.create_task(aiops.events.submit(config.id, [event("alert")], patience_seconds=600))
        await asyncio.sleep(1)
        assert not sending.done()
        sending.cancel()
        done, _ = await asyncio.wait({sending}, timeout=10)
        assert sending in done and sending.cancelled()
    finally:
        await handle.terminate("test done")
