"""Delivery: the only way out of the gateway is ``AiopsClient.events`` (one batch per agent and request).

A request is answered 2xx only once Temporal has accepted every batch. Transient
failures (Temporal unreachable, a deadline, the agent between two runs) are retried
briefly with backoff, within ``delivery.timeout_seconds``; then the request is
answered 503 with ``Retry-After`` and the sender (Alertmanager) delivers again later.
Redelivering a batch that was in fact accepted is harmless: event ids are stable, so
the agent drops the repeats.

An agent that is not running (never started, stopped, failed) is also answered 503,
not 4xx: Alertmanager drops a notification answered 4xx for good, while the agent
may be restarted within minutes (``aiops agents start``); a 503 keeps the alert in
Alertmanager's retries and visible in its ``alertmanager_notifications_failed_total``.
A route that names the agent's config file (``agent_configs``) starts it instead,
by update-with-start.

**Coalescing** (``delivery.coalesce``, on by default): concurrent requests for one agent
share its intake updates. While ``delivery.in_flight_per_agent`` updates to an agent are
under way, the batches of later requests for it wait in its lane and go together, as one
update, as soon as one returns; a request alone never waits. Each request still gets the
agent's answer for exactly its own events and is answered 2xx only once Temporal accepted
them; a batch that fails (refused, not running, Temporal away) fails that attempt for every
request in it, each of which then retries or answers 503 as it would have alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiops.client import (
    AgentNotRunningError,
    AiopsClient,
    ClientError,
    EventsRejectedError,
    IntakeRefusedError,
)
from aiops.contracts.agent import MAX_EVENTS_PER_INTAKE, EventAnswer, EventOutcome
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import SystemEvent
from aiops.gateway.config import Delivery
from aiops.health_server import temporal_check

log = logging.getLogger("aiops.gateway")

CONNECT_TIMEOUT_SECONDS = 3.0
READY_TIMEOUT_SECONDS = 3.0
FIRST_BACKOFF_SECONDS = 0.2
MAX_IN_FLIGHT = 512  # intake updates to Temporal at once, across agents (a storm to many agents fans out)
# A coalesced batch stays within one intake update: at most the update's event limit, and well under
# the agent's 1 MB queue budget (a request bigger than this still goes, alone, as before).
COALESCE_MAX_EVENTS = MAX_EVENTS_PER_INTAKE
COALESCE_MAX_BYTES = 256_000


class TemporalUnavailable(AiopsError):
    pass


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


class Connector:
    """Connects to Temporal on first need, so the gateway starts (and says it is not ready) while
    Temporal is down; once connected, the SDK's client reconnects by itself."""

    def __init__(self, connect: Callable[[], Awaitable[AiopsClient]]) -> None:
        self._connect = connect
        self._client: AiopsClient | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, client: AiopsClient) -> Connector:
        async def given() -> AiopsClient:
            return client

        return cls(given)

    async def get(self) -> AiopsClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_SECONDS)
                except Exception as err:
                    raise TemporalUnavailable(f"cannot reach Temporal: {one_line(err)}") from None
        return self._client

    async def not_ready(self) -> str | None:
        """None when Temporal answers its health check; else why not."""
        try:
            client = await self.get()
            await asyncio.wait_for(temporal_check(client.client)(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            return "Temporal did not answer its health check in time"
        except Exception as err:
            return one_line(err)
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def retryable_refusal(err: IntakeRefusedError) -> bool:
    """Whether the agent said "send again in a moment" (about to continue as new, its queue full)
    rather than "never" (stopping): the refusal's details, as the client reads them."""
    cause = getattr(err.__cause__, "cause", None)  # the update's failure: the agent's ApplicationError
    details = getattr(cause, "details", None) or ()
    said = details[0] if details else None
    return isinstance(said, dict) and bool(said.get("retryable"))


@dataclass
class Failure:
    agent_id: str
    reason: str
    not_running: bool = False


class DeliveredIds:
    """The (agent, event id) pairs this gateway delivered lately: only to count duplicates.

    Duplicates are still delivered (the agent's dedup window is the authority, and
    survives a gateway restart); this memory only tells the metrics what they were.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, agent_id: str, event_id: str) -> bool:
        return (agent_id, event_id) in self._ids

    def add(self, agent_id: str, event_id: str) -> None:
        self._ids[(agent_id, event_id)] = None
        self._ids.move_to_end((agent_id, event_id))
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


Send = Callable[[str, list[SystemEvent], AgentConfig | None, float], Awaitable[list[EventAnswer]]]


@dataclass(eq=False)
class _Ticket:
    """One request's events for one agent, waiting in the agent's lane for its answers."""

    events: list[SystemEvent]
    size: int
    config: AgentConfig | None
    rpc_timeout: float
    answer: asyncio.Future[list[EventAnswer]]


@dataclass(eq=False)
class _Lane:
    waiting: deque[_Ticket] = field(default_factory=deque)
    in_flight: int = 0


class Coalescer:
    """Per agent: at most ``in_flight`` intake updates at once; the tickets that arrive meanwhile
    wait and go together in the next update (bounded by the intake's limits), each answered with
    the answers to its own events. One ``submit`` is one attempt: its caller does the retries."""

    def __init__(self, send: Send, in_flight: int) -> None:
        self._send = send
        self.in_flight = in_flight
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.updates = 0  # intake updates sent (a coalesced batch is one): for tests and benchmarks

    async def submit(
        self,
        agent_id: str,
        events: list[SystemEvent],
        size: int,
        config: AgentConfig | None,
        rpc_timeout: float,
    ) -> list[EventAnswer]:
        ticket = _Ticket(events, size, config, rpc_timeout, asyncio.get_running_loop().create_future())
        lane = self._lanes.setdefault(agent_id, _Lane())
        lane.waiting.append(ticket)
        self._pump(agent_id, lane)
        # Cancelled (the request's deadline): a waiting ticket is skipped; a sent one is not waited for.
        return await ticket.answer

    def waiting(self, agent_id: str) -> int:
        """Tickets for the agent waiting for an update to return (not yet sent)."""
        lane = self._lanes.get(agent_id)
        return sum(not t.answer.done() for t in lane.waiting) if lane else 0

    def _pump(self, agent_id: str, lane: _Lane) -> None:
        while lane.in_flight < self.in_flight:
            batch = self._take(lane)
            if not batch:
                break
            lane.in_flight += 1
            task = asyncio.create_task(self._flush(agent_id, lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not lane.waiting and lane.in_flight == 0:
            self._lanes.pop(agent_id, None)

    @staticmethod
    def _take(lane: _Lane) -> list[_Ticket]:
        """The oldest waiting tickets that fit one update: same agent config, within the limits."""
        batch: list[_Ticket] = []
        events = size = 0
        while lane.waiting:
            ticket = lane.waiting[0]
            if ticket.answer.done():  # its request gave up before it was sent
                lane.waiting.popleft()
                continue
            if batch and (
                ticket.config is not batch[0].config
                or events + len(ticket.events) > COALESCE_MAX_EVENTS
                or size + ticket.size > COALESCE_MAX_BYTES
            ):
                break
            batch.append(lane.waiting.popleft())
            events += len(ticket.events)
            size += ticket.size
        return batch

    async def _flush(self, agent_id: str, lane: _Lane, batch: list[_Ticket]) -> None:
        try:
            events = [e for ticket in batch for e in ticket.events]
            self.updates += 1
            sending = asyncio.ensure_future(
                self._send(agent_id, events, batch[0].config, batch[0].rpc_timeout)
            )

            def gave_up(_: object) -> None:  # every request in the batch past its deadline: stop, as alone
                if all(ticket.answer.cancelled() for ticket in batch):
                    sending.cancel()

            for ticket in batch:
                ticket.answer.add_done_callback(gave_up)
            try:
                answers = await sending
                if len(answers) != len(events):
                    raise ClientError(f"agent {agent_id!r} answered {len(answers)} of {len(events)} events")
            except asyncio.CancelledError:
                if all(ticket.answer.cancelled() for ticket in batch):
                    return  # nobody waits for this attempt any more
                for ticket in batch:  # the gateway is stopping: the requests still waiting learn it
                    if not ticket.answer.done():
                        ticket.answer.set_exception(TemporalUnavailable("the delivery was cancelled"))
                raise
            except Exception as err:  # this attempt failed for every request in the batch
                for ticket in batch:
                    if not ticket.answer.done():
                        ticket.answer.set_exception(err)
                return
            start = 0
            for ticket in batch:
                own = answers[start : start + len(ticket.events)]
                start += len(ticket.events)
                if not ticket.answer.done():
                    ticket.answer.set_result(own)
        finally:
            lane.in_flight -= 1
            self._pump(agent_id, lane)


@dataclass(frozen=True)
class _Batch:
    """One agent's part of a request: its events, the config that starts it (if a route names one)
    and the events' JSON size (which bounds a coalesced update)."""

    agent_id: str
    events: list[SystemEvent]
    config: AgentConfig | None
    size: int


class Deliverer:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._coalescers: dict[int, Coalescer] = {}

    def coalescer(self, settings: Delivery) -> Coalescer:
        """The lanes for ``settings.in_flight_per_agent`` (a reload that changes it starts new lanes)."""
        found = self._coalescers.get(settings.in_flight_per_agent)
        if found is None:
            found = self._coalescers[settings.in_flight_per_agent] = Coalescer(
                self._submit, settings.in_flight_per_agent
            )
        return found

    async def deliver(
        self,
        batches: dict[str, list[SystemEvent]],
        configs: dict[str, AgentConfig],
        settings: Delivery,
        sizes: dict[str, int] | None = None,
    ) -> list[Failure]:
        """Send each agent its batch; return the agents whose batch Temporal did not accept.

        ``sizes``: the JSON bytes of each agent's batch, which bounds a coalesced update."""
        sizes = sizes or {}
        parts = [_Batch(a, events, configs.get(a), sizes.get(a, 0)) for a, events in batches.items()]
        results = await asyncio.gather(*(self._one(part, settings) for part in parts))
        return [r for r in results if r is not None]

    async def _submit(
        self, agent_id: str, events: list[SystemEvent], config: AgentConfig | None, rpc_timeout: float
    ) -> list[EventAnswer]:
        """One intake attempt: no patience here, the delivery's own retries and deadline apply."""
        aiops = await self.connector.get()
        async with self._in_flight:
            return await aiops.events.submit(
                agent_id, events, config=config, patience_seconds=0, rpc_timeout_seconds=rpc_timeout
            )

    async def _attempt(self, batch: _Batch, settings: Delivery) -> None:
        agent_id, events, config = batch.agent_id, batch.events, batch.config
        if settings.coalesce:
            coalescer = self.coalescer(settings)
            answers = await coalescer.submit(agent_id, events, batch.size, config, settings.timeout_seconds)
        else:
            answers = await self._submit(agent_id, events, config, settings.timeout_seconds)
        rejected = [a for a in answers if a.outcome == EventOutcome.REJECTED]
        if rejected:  # as events.send_many: no event is reported taken that was not
            raise EventsRejectedError(rejected, answers)

    async def _one(self, batch: _Batch, settings: Delivery) -> Failure | None:
        agent_id = batch.agent_id
        delay = FIRST_BACKOFF_SECONDS
        last = "no attempt made"
        try:
            async with asyncio.timeout(settings.timeout_seconds):
                for attempt in range(1, settings.attempts + 1):
                    try:
                        await self._attempt(batch, settings)
                        return None
                    except AgentNotRunningError:
                        return Failure(agent_id, f"agent {agent_id!r} is not running", not_running=True)
                    except IntakeRefusedError as err:
                        if not retryable_refusal(err):
                            return Failure(
                                agent_id, f"agent {agent_id!r} refused the events: {one_line(err)}"
                            )
                        # the agent between two runs, or its queue full for now: again, briefly
                        last = one_line(err)
                        log.info("delivery to %s refused (attempt %d): %s", agent_id, attempt, last)
                    except ClientError as err:
                        return Failure(agent_id, f"agent {agent_id!r} refused the events: {one_line(err)}")
                    except Exception as err:  # Temporal unreachable, a deadline, a refused update: retry
                        last = one_line(err)
                        log.info("delivery to %s failed (attempt %d): %s", agent_id, attempt, last)
                    if attempt < settings.attempts:
                        await asyncio.sleep(delay)
                        delay *= 2
        except TimeoutError:
            last = f"Temporal did not accept the events within {settings.timeout_seconds:g}s ({last})"
        return Failure(agent_id, f"delivery to agent {agent_id!r} failed: {last}")
