"""Versioned, append-only agent configuration in PostgreSQL.

Each store is a new version N+1 (never an update), numbered under a per-agent
advisory lock so concurrent writers never collide. The stored config carries
its own version number. A trigger announces every insert on the
``aiops_config`` channel, whoever wrote it; ``activities/config_listener.py``
turns that into a hot reload of the running agent.
"""

from __future__ import annotations

import json

import asyncpg

from agents.config_diff import same_settings
from aiops.contracts.activities import StoredConfig
from aiops.contracts.config import AgentConfig

NOTIFY_CHANNEL = "aiops_config"


def _stored(row: asyncpg.Record) -> StoredConfig:
    config = AgentConfig.model_validate_json(row["config"])
    if config.id != row["agent_id"]:
        raise ValueError(
            f"version {row['version']} of agent {row['agent_id']} holds a config for {config.id}"
        )
    return StoredConfig(
        agent_id=row["agent_id"],
        version=row["version"],
        config=config,
        author=row["author"],
        comment=row["comment"],
        created_at=row["created_at"],
    )


class ConfigStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(
        self, config: AgentConfig, author: str, comment: str = "", request_id: str = ""
    ) -> StoredConfig:
        """Store ``config`` as the agent's next version and return it (with its number).

        With ``request_id``, storing the same request again (a retried activity whose first
        attempt committed) returns the version it stored instead of adding another.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"aiops-config:{config.id}"
            )
            if request_id:
                done = await conn.fetchrow(
                    "SELECT agent_id, version, config::text AS config, author, comment, created_at"
                    " FROM agent_config_versions WHERE request_id = $1",
                    request_id,
                )
                if done is not None:
                    return _stored(done)
            latest = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM agent_config_versions WHERE agent_id = $1", config.id
            )
            versioned = config.model_copy(update={"version": latest + 1})
            row = await conn.fetchrow(
                "INSERT INTO agent_config_versions"
                " (agent_id, version, config, author, comment, request_id)"
                " VALUES ($1, $2, $3::jsonb, $4, $5, nullif($6, ''))"
                " RETURNING agent_id, version, config::text AS config, author, comment, created_at",
                config.id,
                versioned.version,
                versioned.model_dump_json(),
                author,
                comment,
                request_id,
            )
        return _stored(row)

    async def register(self, config: AgentConfig, author: str, comment: str = "") -> StoredConfig:
        """The stored version equal to ``config`` if it is the latest, else a new version.

        An agent started with the config it last ran with keeps its version number;
        one started with different settings gets a new version, so every running
        config is in the history.
        """
        latest = await self.latest(config.id)
        if latest is not None and same_settings(latest.config, config):
            return latest
        return await self.append(config, author, comment)

    async def get(self, agent_id: str, version: int) -> StoredConfig | None:
        row = await self.pool.fetchrow(
            "SELECT agent_id, version, config::text AS config, author, comment, created_at"
            " FROM agent_config_versions WHERE agent_id = $1 AND version = $2",
            agent_id,
            version,
        )
        return _stored(row) if row else None

    async def latest(self, agent_id: str) -> StoredConfig | None:
        row = await self.pool.fetchrow(
            "SELECT agent_id, version, config::text AS config, author, comment, created_at"
            " FROM agent_config_versions WHERE agent_id = $1 ORDER BY version DESC LIMIT 1",
            agent_id,
        )
        return _stored(row) if row else None

    async def history(self, agent_id: str, limit: int = 100) -> list[StoredConfig]:
        """Newest first."""
        rows = await self.pool.fetch(
            "SELECT agent_id, version, config::text AS config, author, comment, created_at"
            " FROM agent_config_versions WHERE agent_id = $1 ORDER BY version DESC LIMIT $2",
            agent_id,
            limit,
        )
        return [_stored(r) for r in rows]


def notification(payload: str) -> tuple[str, int] | None:
    """``(agent_id, version)`` from an ``aiops_config`` notification, or None if malformed."""
    try:
        body = json.loads(payload)
        return str(body["agent_id"]), int(body["version"])
    except (ValueError, KeyError, TypeError):
        return None
