"""Schema migrations against a real PostgreSQL: applied once, even by racing workers."""

from __future__ import annotations

import asyncio

import asyncpg

from activities.database.migrations import SQL_DIR, migrate
from tests.support.postgres_server import PostgresServer


async def test_racing_runners_apply_each_migration_once(postgres: PostgresServer) -> None:
    admin = await asyncpg.connect(postgres.url)
    database = "migrations_race"
    await admin.execute(f"DROP DATABASE IF EXISTS {database}")
    await admin.execute(f"CREATE DATABASE {database}")
    await admin.close()
    url = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    connections = [await asyncpg.connect(url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        expected = sorted(p.name for p in SQL_DIR.glob("*.sql"))
        assert sorted(name for done in results for name in done) == expected
        assert await migrate(connections[0]) == []
        tables = {r["tablename"] for r in await connections[0].fetch("SELECT tablename FROM pg_tables")}
        assert {"schema_migrations", "agent_config_versions", "audit_log"} <= tables
        rows = await connections[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == expected
    finally:
        for c in connections:
            await c.close()
