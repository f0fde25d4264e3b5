"""Schema migrations: plain SQL files in ``activities/database/sql``, applied in name order, once.

Each applied file is recorded in ``schema_migrations``; a PostgreSQL advisory
lock serializes runners, so several workers starting at once apply each file
exactly once. Run it alone with ``python -m activities.database.migrations`` (uses
``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

SQL_DIR = Path(__file__).parent / "sql"
LOCK_ID = 0x41494F5053  # "AIOPS": the advisory lock every migration runner takes


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        done = []
        for path in sorted(SQL_DIR.glob("*.sql")):
            if path.name in applied:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            done.append(path.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


async def _main() -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("set DATABASE_URL (e.g. the URL `bash temporal-dev/start.sh` prints)", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(url)
    try:
        done = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + (", ".join(done) if done else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
