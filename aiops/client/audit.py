"""Audit: read the trail and check its hash chains, straight from PostgreSQL.

The workflows write every audit row themselves; the client only reads. This and the config
sub-client are the only parts of the client that touch the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Unpack

import asyncpg

from activities.database.audit_log import (
    GENESIS,
    AuditLog,
    AuditPosition,
    AuditQuery,
    AuditRow,
    ChainReport,
    ChainRow,
    chain_hash,
    rows_after,
)
from aiops.client.common import Connection

__all__ = [
    "GENESIS",
    "AuditClient",
    "AuditPosition",
    "AuditQuery",
    "AuditRow",
    "ChainReport",
    "ChainRow",
    "chain_hash",
]

# What a database restart or a dropped connection looks like to a reader: worth waiting out.
RECONNECTABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)


class AuditClient:
    """The audit trail: ``client.audit`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    async def rows(self, **query: Unpack[AuditQuery]) -> list[AuditRow]:
        """Rows of one agent or action (or all), in a time window, oldest first unless asked:
        ``AuditQuery`` names the filters, ``AuditLog.rows`` gives their defaults."""
        return await AuditLog(self._conn.database()).rows(**query)

    async def verify(self, agent_id: str | None = None) -> list[ChainReport]:
        """Check the hash chain of one agent, or of every agent in the log."""
        log = AuditLog(self._conn.database())
        agents = [agent_id] if agent_id else await log.agents()
        return [await log.verify(a) for a in agents]

    async def tail(
        self,
        position: AuditPosition,
        *,
        agent_id: str | None = None,
        action_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 500,
        follow: bool = False,
        interval: float = 2.0,
        stop: asyncio.Event | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> AsyncIterator[tuple[list[ChainRow], AuditPosition]]:
        """Every audit row after ``position`` (filtered), in batches of at most ``batch``, each
        with the position after it: the reusable tail of the audit log (``aiops audit export``,
        and any publisher that ships rows elsewhere).

        The consumer stores the position only once it has delivered the batch, and resumes from it
        later: nothing is skipped and, after a clean stop, nothing repeats (a crash between
        delivering and storing repeats at most that batch). Memory is bounded by ``batch``: each
        read is one keyset page (``rows_after``). Without ``follow`` it ends when no row is left;
        with it, it polls every ``interval`` seconds for rows that landed since, and waits out a
        lost database (restart, dropped connection) with backoff, telling ``on_retry``. Setting
        ``stop`` ends it after the batch in hand, never in the middle of one.
        """
        stop = stop or asyncio.Event()
        pool = self._conn.database()
        delay = interval
        while not stop.is_set():
            try:
                rows = await rows_after(pool, position, batch, agent_id, action_id, since, until)
            except RECONNECTABLE as err:
                if not follow:
                    raise
                if on_retry is not None:
                    on_retry(err, delay)
                await _wait(stop, delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = interval
            if rows:
                position = position.after(rows)
                yield rows, position
                if len(rows) == batch:
                    continue
            if not follow:
                return
            await _wait(stop, interval)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless ``stop`` is set first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
