"""Hot reload from the database: a config stored by anyone reaches the running agent.

Each worker LISTENs on ``aiops_config`` (a trigger announces every stored
version) and sends the running agent a ``reconfigure`` update naming the new
version. Every worker does it, and that is fine: the agent takes a version
once and answers the rest "already running it". After a lost connection the
listener catches up on versions stored while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.database.config_store import NOTIFY_CHANNEL, notification
from aiops.contracts.agent import AgentMessages, ConfigApplied, ReconfigureRequest, agent_workflow_id

log = logging.getLogger("aiops.config_listener")

CATCH_UP_MARGIN = timedelta(seconds=30)


class ConfigListener:
    def __init__(self, url: str, client: Client, reconnect_seconds: float = 2.0) -> None:
        self.url = url
        self.client = client
        self.reconnect_seconds = reconnect_seconds
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[ConfigApplied | None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._deliveries):
            task.cancel()

    async def _run(self) -> None:
        lost_at: datetime | None = None
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.url)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, closed=closed: closed.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notification)
                self.listening.set()
                log.info("listening for config changes on %r", NOTIFY_CHANNEL)
                if lost_at is not None:
                    await self._catch_up(conn, lost_at - CATCH_UP_MARGIN)
                    lost_at = None
                await closed.wait()
                log.warning("lost the config listener's database connection; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("config listener cannot reach PostgreSQL (%s); retrying", err)
            finally:
                self.listening.clear()
                if lost_at is None:
                    lost_at = datetime.now(UTC)
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(self.reconnect_seconds)

    async def _catch_up(self, conn: asyncpg.Connection, since: datetime) -> None:
        rows = await conn.fetch(
            "SELECT agent_id, max(version) AS version FROM agent_config_versions"
            " WHERE created_at >= $1 GROUP BY agent_id",
            since,
        )
        for row in rows:
            self._deliver_later(row["agent_id"], row["version"])

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        parsed = notification(payload)
        if parsed is None:
            log.warning("ignored a malformed config notification: %r", payload)
            return
        self._deliver_later(*parsed)

    def _deliver_later(self, agent_id: str, version: int) -> None:
        task = asyncio.create_task(self.deliver(agent_id, version))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def deliver(self, agent_id: str, version: int) -> ConfigApplied | None:
        """Ask the running agent to take ``version``; None when no such agent runs."""
        handle = self.client.get_workflow_handle(agent_workflow_id(agent_id))
        try:
            applied: ConfigApplied = await handle.execute_update(
                AgentMessages.reconfigure, ReconfigureRequest(version=version)
            )
        except WorkflowUpdateFailedError as err:
            log.warning("agent %s refused config version %d: %s", agent_id, version, err.cause)
            return None
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                log.debug("agent %s is not running; version %d waits for its next start", agent_id, version)
                return None
            log.warning("could not deliver config version %d to agent %s: %s", version, agent_id, err)
            return None
        if applied.changed:
            log.info("agent %s reloaded config version %d", agent_id, applied.version)
        return applied
