"""``aiops source redis``: entries of Redis streams, read by a consumer group, delivered to agents.

Why Redis Streams with a consumer group: the group tracks what each consumer read and did not yet
acknowledge (its pending entries list), so the source can acknowledge an entry only once its agents
took it, and a consumer that dies leaves its entries for another to claim (XAUTOCLAIM) instead of
losing them. Why redis-py: the field's standard client, with an asyncio API and the stream commands.

The path of an entry: read (XREADGROUP, at most ``count`` entries) -> checked and turned into an
event (redis_entries.py, the same checks as ``POST /v1/events``) -> routed by the gateway config's
routes (aiops/gateway/routing.py) -> delivered by the gateway's ``Deliverer`` (its retries, its
coalescing, its answers) -> acknowledged (XACK) once every agent it was routed to accepted it or
called it a duplicate. An entry that cannot become an event, or that no route takes, goes to the
dead-letter stream with its reason and is acknowledged in the same transaction.

Backpressure: when an agent does not take its events (its queue full, the delivery's retries spent,
the agent not running, Temporal away), nothing is acknowledged or dropped: the consumer halves its
read size, pauses (doubling up to a ceiling) and delivers the same events again, and reads nothing
new meanwhile. While it holds entries it re-claims them for itself, so another consumer does not
take them for dead. Once deliveries succeed the read size doubles back to ``batch``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiops.contracts.models import SystemEvent
from aiops.gateway.delivery import Deliverer, one_line
from aiops.gateway.intake import EventRefused
from aiops.gateway.reload import ConfigHolder
from aiops.gateway.routing import event_labels, select_routes
from aiops.sources.redis_entries import Entry, dead_letter_fields, read_entry
from aiops.sources.redis_settings import RedisSourceSettings

log = logging.getLogger("aiops.sources.redis")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
FIRST_RECONNECT_SECONDS = 0.1
MAX_RECONNECT_SECONDS = 5.0


@dataclass
class SourceStats:
    """What this consumer did, for its log lines, the tests and the bench."""

    read: int = 0
    acked: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    pushbacks: int = 0
    reconnects: int = 0
    count: int = 0  # the read size in force
    last_pushback: str = ""


@dataclass
class _Held:
    """The routed entries of one read, waiting for their agents."""

    batches: dict[str, list[SystemEvent]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    waiting: dict[Entry, set[str]] = field(default_factory=dict)  # entry -> agents yet to take it


def open_redis(url: str, block_ms: int = 1000) -> Redis:
    """A client whose socket timeout outlasts a blocking read, so a quiet stream is not an error."""
    client: Redis = Redis.from_url(
        url, socket_timeout=block_ms / 1000 + 10, socket_connect_timeout=3, health_check_interval=15
    )
    return client


class RedisSource:
    def __init__(
        self, settings: RedisSourceSettings, redis: Redis, holder: ConfigHolder, deliverer: Deliverer
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.holder = holder
        self.deliverer = deliverer
        self.stats = SourceStats(count=settings.batch)
        self.stopping = asyncio.Event()
        self._cursors = {stream: "0-0" for stream in settings.streams}
        self._next_claim = 0.0
        self._own_pending = True  # first, what this consumer (by name) read before a restart

    # ----- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, deliver, acknowledge until ``stopping`` is set; Redis going away is waited out."""
        await self._until_done(self.ensure_groups)
        delay = FIRST_RECONNECT_SECONDS
        while not self.stopping.is_set():
            try:
                entries = await self._next_entries()
                delay = FIRST_RECONNECT_SECONDS
            except REDIS_DOWN as err:
                self.stats.reconnects += 1
                log.warning("redis unreachable (%s); again in %.1fs", one_line(err), delay)
                await self._pause(delay)
                delay = min(delay * 2, MAX_RECONNECT_SECONDS)
                continue
            except ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
                log.warning("consumer group missing (Redis lost it?): creating it again: %s", one_line(err))
                await self._until_done(self.ensure_groups)
                continue
            if entries:
                await self.handle(entries)

    def stop(self) -> None:
        self.stopping.set()

    async def ensure_groups(self) -> None:
        """Create the group on each stream (and the stream) when missing, reading from the start."""
        for stream in self.settings.streams:
            try:
                await self.redis.xgroup_create(stream, self.settings.group, id="0", mkstream=True)
                log.info("created consumer group %s on %s", self.settings.group, stream)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise

    async def _next_entries(self) -> list[Entry]:
        if self._own_pending:
            mine = await self._read("0", block=None)
            if mine:
                return mine
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.settings.claim_every_seconds
            claimed = await self.claim()
            if claimed:
                return claimed
        return await self._read(">", self.settings.block_ms)

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        """``>``: entries no consumer was given yet; ``0``: this consumer's own pending entries."""
        answer: Any = await self.redis.xreadgroup(
            self.settings.group,
            self.settings.consumer,
            dict.fromkeys(self.settings.streams, start),
            count=self.stats.count,
            block=block,
        )
        entries = [
            Entry(_text(stream), _text(entry_id), fields or {})
            for stream, items in answer or []
            for entry_id, fields in items
        ]
        self.stats.read += len(entries)
        return entries

    async def claim(self) -> list[Entry]:
        """Entries other consumers (or this one, before a restart) left pending longer than the idle time."""
        idle_ms = int(self.settings.claim_idle_seconds * 1000)
        found: list[Entry] = []
        for stream in self.settings.streams:
            answer: Any = await self.redis.xautoclaim(
                stream,
                self.settings.group,
                self.settings.consumer,
                min_idle_time=idle_ms,
                start_id=self._cursors[stream],
                count=self.stats.count,
            )
            cursor, items = answer[0], answer[1]
            self._cursors[stream] = _text(cursor)
            deleted = answer[2] if len(answer) > 2 else []
            if deleted:  # trimmed away before anyone took them: Redis drops them from the pending list
                log.warning("%d pending entries of %s were deleted from the stream", len(deleted), stream)
            found += [Entry(stream, _text(i), fields or {}) for i, fields in items if i is not None]
        if found:
            self.stats.claimed += len(found)
            log.info("claimed %d entries idle over %gs", len(found), self.settings.claim_idle_seconds)
        return found

    # ----- one read ----------------------------------------------------------------------------

    async def handle(self, entries: list[Entry]) -> None:
        """Deliver ``entries``; return once each is acknowledged (taken or dead-lettered) or stopping."""
        loaded = self.holder.current
        held, refused = self._route(entries)
        if refused:
            await self._until_done(self._dead_letter, refused)
        pause = self.settings.pushback_pause_seconds
        while held.batches:
            failures = await self.deliverer.deliver(
                held.batches, loaded.agent_configs, loaded.config.delivery, held.sizes
            )
            failed = {f.agent_id: f.reason for f in failures}
            taken = set(held.batches) - set(failed)
            done = []
            for entry, agents in held.waiting.items():
                agents -= taken
                if not agents:
                    done.append(entry)
            for entry in done:
                del held.waiting[entry]
            if done:
                await self._until_done(self._ack, done)
            held.batches = {a: held.batches[a] for a in failed}
            if not failed:
                self.stats.count = min(self.settings.batch, self.stats.count * 2)
                return
            self.stats.pushbacks += 1
            self.stats.count = max(1, self.stats.count // 2)
            self.stats.last_pushback = next(iter(failed.values()))
            log.warning(
                "agents did not take %d entries (%s); reading %d at a time, again in %.1fs",
                len(held.waiting),
                self.stats.last_pushback,
                self.stats.count,
                pause,
            )
            await self._pause(pause)
            if self.stopping.is_set():
                return  # left pending: claimed by another consumer, or read again after a restart
            pause = min(pause * 2, self.settings.pushback_max_pause_seconds)
            await self._keep(list(held.waiting))

    def _route(self, entries: list[Entry]) -> tuple[_Held, list[tuple[Entry, str]]]:
        config = self.holder.current.config
        held = _Held()
        refused: list[tuple[Entry, str]] = []
        taken: set[tuple[str, str]] = set()
        for entry in entries:
            try:
                event, size = read_entry(entry, self.settings)
            except EventRefused as err:
                refused.append((entry, str(err)))
                continue
            routes = select_routes(config.routes, event_labels(event), self.settings.source_name)
            if not routes:
                refused.append(
                    (
                        entry,
                        f"no route takes the event (type={event.type.value}, source={event.source[:100]}, "
                        f"severity={event.severity.value})",
                    )
                )
                continue
            agents = {a for route in routes for a in route.agents}
            held.waiting[entry] = agents
            for agent_id in agents:
                if (agent_id, event.id) in taken:
                    continue  # the same event twice in one read: once is enough, both are acked
                taken.add((agent_id, event.id))
                held.batches.setdefault(agent_id, []).append(event)
                held.sizes[agent_id] = held.sizes.get(agent_id, 0) + size
        return held, refused

    # ----- Redis writes, each retried while Redis is away --------------------------------------

    async def _ack(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.settings.group, *ids)
            await pipe.execute()
        self.stats.acked += len(entries)

    async def _dead_letter(self, refused: list[tuple[Entry, str]]) -> None:
        """Each refused entry copied to the dead-letter stream and acknowledged, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry, reason in refused:
                pipe.xadd(
                    self.settings.dead_letter_stream,
                    dead_letter_fields(entry, reason, self.settings),  # type: ignore[arg-type]
                    maxlen=self.settings.dead_letter_maxlen,
                    approximate=True,
                )
                pipe.xack(entry.stream, self.settings.group, entry.id)
            await pipe.execute()
        self.stats.dead_lettered += len(refused)
        for entry, reason in refused[:5]:
            log.info("dead-lettered %s %s: %s", entry.stream, entry.id, reason)

    async def _keep(self, entries: list[Entry]) -> None:
        """Reset the idle time of entries still held, so no other consumer claims them meanwhile."""
        by_stream: dict[str, list[Any]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        try:
            for stream, ids in by_stream.items():
                await self.redis.xclaim(
                    stream, self.settings.group, self.settings.consumer, 0, ids, justid=True
                )
        except REDIS_DOWN as err:  # only a courtesy: a claim by another consumer costs a duplicate
            log.info("could not re-claim held entries: %s", one_line(err))

    async def _until_done(self, write: Callable[..., Awaitable[None]], *args: Any) -> None:
        delay = FIRST_RECONNECT_SECONDS
        while True:
            try:
                await write(*args)
                return
            except REDIS_DOWN as err:
                if self.stopping.is_set():
                    return  # unacknowledged entries are read again (or claimed) later: duplicates only
                self.stats.reconnects += 1
                log.warning("redis unreachable (%s); again in %.1fs", one_line(err), delay)
                await self._pause(delay)
                delay = min(delay * 2, MAX_RECONNECT_SECONDS)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
