"""Audit: read the trail and check its hash chains, straight from PostgreSQL.

The workflows write every audit row themselves; the client only reads. This and the config
sub-client are the only parts of the client that touch the database.
"""

from __future__ import annotations

from datetime import datetime

from activities.database.audit_log import AuditLog, AuditRow, ChainReport
from aiops.client.common import Connection


class AuditClient:
    """The audit trail: ``client.audit`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    async def rows(
        self,
        agent_id: str | None = None,
        action_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        """Rows of one agent or action (or all), in a time window, oldest first unless asked."""
        log = AuditLog(self._conn.database())
        return await log.rows(agent_id, action_id, since, until, limit, newest_first)

    async def verify(self, agent_id: str | None = None) -> list[ChainReport]:
        """Check the hash chain of one agent, or of every agent in the log."""
        log = AuditLog(self._conn.database())
        agents = [agent_id] if agent_id else await log.agents()
        return [await log.verify(a) for a in agents]
