"""``AiopsClient``: the one object operators, ingress, the demo and tests construct.

It holds no behaviour of its own: each subject is a typed sub-client sharing one ``Connection``
(``agents``, ``events``, ``approvals``, ``config``, ``audit``), so every class stays narrow and
every call has one home, e.g. ``await client.events.send(agent_id, event)``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.client import Client

from activities.database.pool import database_url, open_pool
from aiops.client.agents import AgentsClient
from aiops.client.approvals import ApprovalsClient
from aiops.client.audit import AuditClient
from aiops.client.common import Connection
from aiops.client.config import ConfigClient
from aiops.client.events import EventsClient
from aiops.connection import connect
from aiops.contracts.agent import DEFAULT_TASK_QUEUE
from aiops.keys import KeyFile


class AiopsClient:
    """Temporal (and, for config history and the audit trail, PostgreSQL) for one task queue."""

    def __init__(
        self,
        client: Client,
        task_queue: str = DEFAULT_TASK_QUEUE,
        pool: asyncpg.Pool | None = None,
        actor: str = "",
        key: KeyFile | None = None,
    ) -> None:
        """``pool`` (PostgreSQL) is needed only to read config history and the audit trail.
        ``actor`` and ``key``: who this client's agent commands and config changes come from
        when a call does not say (with ``key`` they are signed, as a production config needs)."""
        actor = key.approver if key is not None and not actor else actor
        self.connection = Connection(client, task_queue, pool, actor, key)
        self.agents = AgentsClient(self.connection)
        self.events = EventsClient(self.connection, self.agents)
        self.approvals = ApprovalsClient(self.connection)
        self.config = ConfigClient(self.connection)
        self.audit = AuditClient(self.connection)

    @classmethod
    async def connect(cls, task_queue: str = DEFAULT_TASK_QUEUE, **kwargs: Any) -> AiopsClient:
        """Connect with the worker's environment settings (and ``DATABASE_URL`` when set)."""
        url = database_url()
        pool = await open_pool(url, attempts=3, max_size=2) if url else None
        return cls(await connect(**kwargs), task_queue, pool)

    async def close(self) -> None:
        if self.connection.pool is not None:
            await self.connection.pool.close()

    @property
    def client(self) -> Client:
        """The Temporal client, for what no sub-client covers (a workflow's history, say)."""
        return self.connection.client

    @property
    def task_queue(self) -> str:
        return self.connection.task_queue

    @property
    def pool(self) -> asyncpg.Pool | None:
        return self.connection.pool

    @property
    def actor(self) -> str:
        return self.connection.actor

    @property
    def key(self) -> KeyFile | None:
        return self.connection.key
