"""``aiops publish redis``: the audit log, row by row, as a Redis stream other systems subscribe to.

The PostgreSQL audit log is the source of truth; the stream is a copy that is never ahead of it and
never has a row twice. The publisher tails each agent's rows by ``seq`` (an agent's rows are written
under its chain lock, so they become visible in ``seq`` order: a position per agent skips nothing)
and publishes each with a Lua script that, atomically, checks the agent's position in the hash
``<stream>:positions``, XADDs the row and moves the position. A publisher killed at any point, a
second publisher running by mistake, or a restart publishes nothing twice and skips nothing: the
position and the entries live in the same Redis, written together.

By default only rows of an action's life are published (rows with an ``action_id``: proposed and
decided, waiting for approval, approved or refused, executed, verified, rolled back, finished);
``all_steps`` publishes every row (events received, config changes, agent lifecycle...).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from aiops.gateway.delivery import one_line
from aiops.sources.redis_settings import RedisPublishSettings

log = logging.getLogger("aiops.sources.redis")

# KEYS: stream, positions hash. ARGV: agent, seq, publish (1/0), maxlen, then field, value, ...
PUBLISH_ROW = """
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= current then return 0 end
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return tonumber(ARGV[3])
"""

ROWS_AFTER = (
    "SELECT seq, agent_id, action_id, step, idempotency_key, actor, detail::text AS detail,"
    " occurred_at, recorded_at, row_hash FROM audit_log WHERE agent_id = $1 AND seq > $2"
    " ORDER BY seq LIMIT $3"
)


@dataclass
class PublishStats:
    published: int = 0
    skipped: int = 0  # rows passed without an entry: not of an action's life, or already published


class AuditPublisher:
    def __init__(self, settings: RedisPublishSettings, redis: Redis, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.stats = PublishStats()
        self.stopping = asyncio.Event()
        self._script = redis.register_script(PUBLISH_ROW)

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        """Publish until stopped; a pass that found nothing waits ``every_seconds``."""
        while not self.stopping.is_set():
            try:
                found = await self.publish_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("publishing the audit log failed (%s); again shortly", one_line(err))
                found = 0
            except Exception as err:  # redis errors: connection lost, a script refused
                log.warning("publishing the audit log failed (%s); again shortly", one_line(err))
                found = 0
            if not found:
                try:
                    await asyncio.wait_for(self.stopping.wait(), self.settings.every_seconds)
                except TimeoutError:
                    pass

    async def agents(self) -> list[str]:
        if self.settings.agents:
            return self.settings.agents
        return [r["agent_id"] for r in await self.pool.fetch("SELECT DISTINCT agent_id FROM audit_log")]

    async def positions(self) -> dict[str, int]:
        raw: Any = await self.redis.hgetall(self.settings.positions_key)
        return {_text(k): int(v) for k, v in raw.items()}

    async def publish_once(self) -> int:
        """One pass over every agent: up to ``batch`` rows each; the number of rows handled."""
        positions = await self.positions()
        handled = 0
        for agent_id in await self.agents():
            rows = await self.pool.fetch(
                ROWS_AFTER, agent_id, positions.get(agent_id, 0), self.settings.batch
            )
            if not rows:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    publish = self.settings.all_steps or row["action_id"] is not None
                    args: list[Any] = [agent_id, row["seq"], "1" if publish else "0", self.settings.maxlen]
                    if publish:
                        args += [x for pair in self.entry_fields(row).items() for x in pair]
                    await self._script(
                        keys=[self.settings.stream, self.settings.positions_key], args=args, client=pipe
                    )
                results = await pipe.execute()
            self.stats.published += sum(1 for r in results if r == 1)
            self.stats.skipped += sum(1 for r in results if r == 0)
            handled += len(rows)
        return handled

    def entry_fields(self, row: asyncpg.Record) -> dict[str, str]:
        detail = row["detail"]
        if len(detail.encode()) > self.settings.max_detail_bytes:
            detail = json.dumps({"truncated": True, "bytes": len(detail.encode())})
        return {
            "seq": str(row["seq"]),
            "agent_id": row["agent_id"],
            "action_id": row["action_id"] or "",
            "step": row["step"],
            "key": row["idempotency_key"],
            "actor": row["actor"],
            "occurred_at": row["occurred_at"].isoformat(),
            "recorded_at": row["recorded_at"].isoformat(),
            "row_hash": row["row_hash"],
            "detail": detail,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
