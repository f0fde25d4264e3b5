"""The worker's PostgreSQL: one asyncpg pool, migrated before use.

``DATABASE_URL`` names it (``temporal-dev/postgres.py url`` prints the local
one). Opening retries with a clear message, since workers often start before
the database does.
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg

from activities.database.migrations import migrate

DATABASE_URL_ENV = "DATABASE_URL"

log = logging.getLogger("aiops.database")


async def open_pool(url: str, attempts: int = 30, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool on ``url`` with every migration applied (retries while the server starts)."""
    for attempt in range(1, attempts + 1):
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
            break
        except (OSError, asyncpg.PostgresError) as err:
            if attempt == attempts:
                raise
            log.warning("PostgreSQL not reachable yet (%s); retrying (%d/%d)", err, attempt, attempts)
            await asyncio.sleep(1)
    async with pool.acquire() as conn:
        applied = await migrate(conn)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return pool


def database_url() -> str | None:
    return os.environ.get(DATABASE_URL_ENV) or None
