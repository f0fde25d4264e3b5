"""Events: deliver them to an agent through its ``intake`` update, and say what became of each.

A batch the agent cannot take yet (queue full, a continue-as-new under way, the server busy) is
sent again with backoff; nothing is ever reported taken that the agent did not take. A batch the
server refuses because every update slot of the agent is taken (independent senders) goes by
signal instead, answered ``queued`` (``busy_signal.py``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypedDict, Unpack

from pydantic import ValidationError
from pydantic_core import to_json
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from aiops.client.agents import AgentsClient
from aiops.client.busy_signal import queue_by_signal
from aiops.client.common import Connection, no_agent
from aiops.client.errors import (
    ClientError,
    ConfigRefusedError,
    EventsRejectedError,
    EventTooLargeError,
    IntakeRefusedError,
)
from aiops.contracts.agent import (
    INTAKE_REFUSED,
    MAX_EVENTS_PER_INTAKE,
    AgentWorkflowInput,
    EventAnswer,
    EventOutcome,
    IntakeRequest,
    agent_workflow_id,
)
from aiops.contracts.config import AgentConfig
from aiops.contracts.limits import MAX_EVENT_BYTES, MAX_INTAKE_BYTES, UNMEASURABLE, json_size, over_budget
from aiops.contracts.models import SystemEvent
from workflows.agent.workflow import AgentWorkflow

# How long a batch the agent cannot take yet (queue full, continue-as-new) is sent again.
INTAKE_PATIENCE_SECONDS = 60.0
# How long one intake call waits for the server's answer before it is tried again.
INTAKE_RPC_TIMEOUT_SECONDS = 10.0
RETRYABLE_RPC = frozenset(
    {
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.ABORTED,
        # "workflow not ready": a workflow task failed under the storm (new events arrived while it
        # completed) or the run is closing for continue-as-new; the next attempt reaches it.
        RPCStatusCode.FAILED_PRECONDITION,
        # The server's limit of in-flight updates per workflow (10 by default) was reached.
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)
# How long events to an agent go by signal after the server refused an update because every one of
# the agent's update slots was taken (aiops/client/busy_signal.py): long enough that a thousand
# independent senders try a few updates a second between them, not hundreds.
BUSY_SIGNAL_SECONDS = 30.0
# Intake calls this client keeps in flight per agent: under the server's limit of 10 in-flight
# updates per workflow, so concurrent senders queue here instead of being refused there.
INTAKE_IN_FLIGHT_PER_AGENT = 8


class _How(NamedTuple):
    """How one ``submit`` delivers its batches (its options)."""

    patience: float
    rpc_timeout: float
    signal_when_busy: bool


class IntakeOptions(TypedDict, total=False):
    """How events are delivered, as ``submit`` takes them (its defaults apply to what is left out):
    ``send_many`` passes them on, so the two are one delivery and cannot drift apart."""

    batch_size: int
    require_worker: bool
    patience_seconds: float
    rpc_timeout_seconds: float
    signal_when_busy: bool


class EventsClient:
    """Event delivery: ``client.events`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection, agents: AgentsClient) -> None:
        self._conn = connection
        self._agents = agents  # to check that a worker serves an agent before starting it
        self._intake_gates: dict[str, asyncio.Semaphore] = {}  # agent id -> in-flight intake calls
        self._busy_until: dict[str, float] = {}  # agent id -> until when its events go by signal
        self._batchers: dict[str, _Batcher] = {}  # agent id -> single sends waiting to go together

    async def send(
        self,
        agent_id: str,
        event: SystemEvent | dict[str, Any],
        config: AgentConfig | None = None,
        require_worker: bool = True,
    ) -> EventAnswer:
        """Deliver one event and return its answer; raises ``EventsRejectedError`` if it was not
        taken. With ``config``, the agent is started first if it is not running.

        Concurrent calls for one agent are sent together: while one intake call is in flight, the
        events that arrive meanwhile wait and go as the next batch, so a storm of single sends
        costs a few updates, not one each (the server takes 10 in-flight updates per workflow).
        """
        if config is not None:
            [answer] = await self.send_many(agent_id, [event], config, require_worker=require_worker)
            return answer
        batcher = self._batchers.get(agent_id)
        if batcher is None:
            batcher = self._batchers[agent_id] = _Batcher(lambda batch: self.submit(agent_id, batch))
        payload = _jsonable(event)
        checked_size(payload)
        answer = await batcher.add(payload)
        if answer.outcome == EventOutcome.REJECTED:
            raise EventsRejectedError([answer], [answer])
        return answer

    async def send_many(
        self,
        agent_id: str,
        events: Iterable[SystemEvent | dict[str, Any]],
        config: AgentConfig | None = None,
        **options: Unpack[IntakeOptions],
    ) -> list[EventAnswer]:
        """Deliver events and return one answer each (accepted, duplicate or grouped); raises
        ``EventsRejectedError`` (with every answer) when any event was rejected, so no event is
        reported taken that was not. See ``submit`` for the options and the answers without raising."""
        answers = await self.submit(agent_id, events, config, **options)
        rejected = [a for a in answers if a.outcome == EventOutcome.REJECTED]
        if rejected:
            raise EventsRejectedError(rejected, answers)
        return answers

    async def submit(
        self,
        agent_id: str,
        events: Iterable[SystemEvent | dict[str, Any]],
        config: AgentConfig | None = None,
        batch_size: int = MAX_EVENTS_PER_INTAKE,
        require_worker: bool = True,
        patience_seconds: float = INTAKE_PATIENCE_SECONDS,
        rpc_timeout_seconds: float = INTAKE_RPC_TIMEOUT_SECONDS,
        signal_when_busy: bool = True,
    ) -> list[EventAnswer]:
        """Deliver events through the agent's ``intake`` update: one answer per event, in order.

        A batch the agent cannot take now (queue full, a continue-as-new under way) is sent again
        with backoff for up to ``patience_seconds``, then ``IntakeRefusedError``; nothing is ever
        reported taken that the agent did not take. With ``config``, the agent is started first
        if it is not running (update-with-start: two starters never make two agents).

        When the server refuses the update because every one of the agent's update slots is taken
        (independent senders), the batch goes by signal and its events are answered ``queued``:
        in the agent's history, to be decided (``aiops/client/busy_signal.py``).
        ``signal_when_busy=False`` keeps to the update, sent again with backoff, for callers that
        need the agent's own answer for each event.
        """
        payloads = [_jsonable(event) for event in events]
        sizes = [checked_size(payload, index) for index, payload in enumerate(payloads)]  # before anything
        if config is not None:
            if config.id != agent_id:
                raise ClientError(f"config is for agent {config.id!r}, not {agent_id!r}")
            if require_worker:
                await self._agents.require_worker_for(config.type)
                try:
                    await self._agents.check_config(config)
                except ConfigRefusedError:
                    if not await self._agents.is_running(agent_id):
                        raise  # the agent would start with it and fail: refused, nothing taken
                    config = None  # the running agent takes the events; its config is not changed here
        answers: list[EventAnswer] = []
        for batch in batches(payloads, sizes, batch_size):
            answers += await self._intake(
                agent_id, batch, config, _How(patience_seconds, rpc_timeout_seconds, signal_when_busy)
            )
        return answers

    async def _intake(
        self, agent_id: str, batch: list[Any], config: AgentConfig | None, how: _How
    ) -> list[EventAnswer]:
        """One batch, split when the agent has room for only part of it; answers in order."""
        answers: list[EventAnswer] = []
        rest = batch
        while rest:
            taken, room = await self._intake_once(agent_id, rest, config, how)
            if taken is not None:
                answers += taken
                rest = rest[len(taken) :]
            else:  # room for part of the batch: send that part first
                answers += await self._intake(agent_id, rest[:room], config, how)
                rest = rest[room:]
        return answers

    async def _intake_once(
        self, agent_id: str, batch: list[Any], config: AgentConfig | None, how: _How
    ) -> tuple[list[EventAnswer] | None, int]:
        request = IntakeRequest(events=batch, compact=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + how.patience
        delay = 0.05
        gate = self._intake_gates.setdefault(agent_id, asyncio.Semaphore(INTAKE_IN_FLIGHT_PER_AGENT))
        by_signal = how.signal_when_busy and self._busy_until.get(agent_id, 0.0) > loop.time()
        # One update id while the batch is only sent again (a timeout, the server busy): if an
        # attempt the sender gave up on was taken after all, the run answers the next with its
        # outcome instead of taking the events twice. A new one after the agent's own answer.
        update_id = str(uuid.uuid4())
        while True:
            try:
                async with gate:
                    if by_signal:
                        return await queue_by_signal(self._conn, agent_id, batch, config), len(batch)
                    answers = await self._intake_call(agent_id, request, config, how.rpc_timeout, update_id)
                    return answers, len(batch)
            except WorkflowUpdateFailedError as err:
                update_id = str(uuid.uuid4())
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == INTAKE_REFUSED):
                    raise ClientError(f"agent {agent_id} could not take the events: {cause}") from err
                said = cause.details[0] if cause.details else None
                retryable = isinstance(said, dict) and bool(said.get("retryable"))
                room = int(said.get("room", 0)) if isinstance(said, dict) else 0
                if retryable and 0 < room < len(batch):
                    return None, room
                if not retryable or loop.time() > deadline:
                    raise IntakeRefusedError(f"agent {agent_id} refused the events: {cause.message}") from err
            except WorkflowUpdateRPCTimeoutOrCancelledError as err:
                if isinstance(err.__cause__, asyncio.CancelledError):
                    # The SDK reports the caller's cancellation as this error: stop, send nothing more.
                    raise asyncio.CancelledError() from err
                if loop.time() > deadline:  # the server did not answer in time: unreachable or busy
                    raise
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND and config is None:
                    raise no_agent(agent_id, err) from err
                if err.status == RPCStatusCode.RESOURCE_EXHAUSTED and how.signal_when_busy and not by_signal:
                    # Every update slot of the agent is taken (the server's 10 in flight per
                    # workflow: many independent senders). A signal needs no slot: send it so now.
                    # It stays so for a while: each update tried against a full agent costs the
                    # server (and the other senders) more than the signal does.
                    by_signal = True
                    self._busy_until[agent_id] = loop.time() + BUSY_SIGNAL_SECONDS
                    continue
                # The run closed under the update (continue-as-new), the server was busy, or the
                # signal was refused (the run's signal limit just before it continues as new):
                # the update again, after a pause.
                retryable = by_signal or err.status in RETRYABLE_RPC
                by_signal = False
                if loop.time() > deadline or not retryable:
                    raise
            # Full jitter: independent senders refused at the same moment (the server's 10 updates
            # in flight per workflow) must not all come back at the same moment.
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)

    async def _intake_call(
        self,
        agent_id: str,
        request: IntakeRequest,
        config: AgentConfig | None,
        rpc_timeout: float,
        update_id: str,
    ) -> list[EventAnswer]:
        """One intake update (update-with-start when ``config`` is given)."""
        if config is None:
            answer = await self._conn.agent_handle(agent_id).execute_update(
                AgentWorkflow.intake, request, id=update_id, rpc_timeout=timedelta(seconds=rpc_timeout)
            )
        else:
            start = WithStartWorkflowOperation(
                AgentWorkflow.run,
                AgentWorkflowInput(config=config),
                id=agent_workflow_id(agent_id),
                task_queue=self._conn.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            answer = await self._conn.client.execute_update_with_start_workflow(
                AgentWorkflow.intake,
                request,
                start_workflow_operation=start,
                id=update_id,
                rpc_timeout=timedelta(seconds=rpc_timeout),
            )
        return answer.expand(request.events)


def _jsonable(event: SystemEvent | dict[str, Any]) -> Any:
    return event.model_dump(mode="json") if isinstance(event, SystemEvent) else event


def checked_size(payload: Any, index: int = 0) -> int:
    """What ``payload`` counts for in an update's budget (``batches``): the bytes it is sent as,
    or the agent's measure when that is larger; ``EventTooLargeError`` when the agent's intake
    would measure it over ``MAX_EVENT_BYTES``.

    Checked here, before anything is sent: an update over Temporal's payload limit fails the agent's
    workflow task instead of answering, so the sender would wait out its patience for an opaque error.

    Most events are far from the limit, and that is known from the JSON they are sent as alone:
    the agent reads that JSON and measures its event's JSON, which is at most ``INTAKE_GROWTH``
    longer (see there). Only an event within ``INTAKE_GROWTH`` of the limit (or one that is no
    JSON) is validated and measured the way the intake does it, so every event the agent would
    measure over the limit is still refused here, with the same message
    (tests/unit/test_sender_measure.py). Validating and dumping every event was most of a
    sender's own work: 6 us an event, against 0.4 us for its JSON.
    """
    try:  # as the converter sends it: NaN and infinities as null, as in the request's model
        sent = len(to_json(payload, inf_nan_mode="null"))
    except (ValueError, RecursionError):  # too deep, circular, not JSON: measured the long way
        sent = 0
    else:
        if sent + INTAKE_GROWTH <= MAX_EVENT_BYTES:
            return sent
    name = payload.get("id") if isinstance(payload, dict) else None
    what = f"event {str(name)[:64]!r}" if isinstance(name, str) else f"event #{index + 1}"
    size = _intake_size(payload)
    if size >= UNMEASURABLE:
        raise EventTooLargeError(f"{what} is nested too deeply to encode as JSON")
    if size > MAX_EVENT_BYTES:
        raise EventTooLargeError(over_budget(what, size, MAX_EVENT_BYTES) + " of one event; nothing was sent")
    return max(size, sent)


# How much longer the agent's measure of an event (``len(event.model_dump_json())``, characters)
# can be than the JSON it was sent as (bytes, never fewer than its characters). The agent reads
# that JSON back and writes every value it keeps the way it came: the same serializer wrote
# both, so strings, numbers, keys and nesting are written alike. What it adds: the fields a
# sender may leave out, at their longest (``,"severity":"medium"`` 20, ``,"data":{}`` 10,
# ``,"correlation_id":null`` 22, ``,"timestamp":`` and the workflow's time with microseconds
# 13 + 29), or a timestamp sent in its shortest form (a number, 1 byte) written out in full
# (at most 34: ``"9999-12-31T23:59:59.999999+23:59"``); 94 at most, and an event without an id
# is refused whatever its size. The margin covers the client's own measure too (a drawn id).
INTAKE_GROWTH = 256


# The longest timestamp the intake can give an event that has none (microseconds, UTC).
_LONGEST_NOW = datetime(2000, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)


def _intake_size(payload: Any) -> int:
    """The size the intake measures, ``len(event.model_dump_json())``, with the timestamp it would
    add; a payload that is not an event is measured as JSON (the agent says what is wrong with it)."""
    if isinstance(payload, dict):
        try:
            return len(SystemEvent.model_validate({"timestamp": _LONGEST_NOW, **payload}).model_dump_json())
        except (ValidationError, RecursionError, ValueError):
            pass
    return json_size(payload)


def batches(payloads: list[Any], sizes: list[int], batch_size: int) -> list[list[Any]]:
    """The payloads in order, at most ``batch_size`` (and ``MAX_EVENTS_PER_INTAKE``) a batch and at most
    ``MAX_INTAKE_BYTES`` of JSON together, so no update is over Temporal's payload limit."""
    count = max(1, min(batch_size, MAX_EVENTS_PER_INTAKE))
    out: list[list[Any]] = []
    batch: list[Any] = []
    total = 0
    for payload, size in zip(payloads, sizes, strict=True):
        if batch and (len(batch) >= count or total + size + 1 > MAX_INTAKE_BYTES):
            out.append(batch)
            batch, total = [], 0
        batch.append(payload)
        total += size + 1
    if batch:
        out.append(batch)
    return out


class _Batcher:
    """Single events for one agent, sent together: one intake call in flight, the rest gather."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[list[EventAnswer]]]) -> None:
        self._send = send
        self._waiting: list[tuple[Any, asyncio.Future[EventAnswer]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def add(self, payload: Any) -> EventAnswer:
        future: asyncio.Future[EventAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.append((payload, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = (
                self._waiting[:MAX_EVENTS_PER_INTAKE],
                self._waiting[MAX_EVENTS_PER_INTAKE:],
            )
            try:
                answers = await self._send([payload for payload, _ in batch])
            except Exception as err:  # every caller of this batch learns why it was not taken
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
