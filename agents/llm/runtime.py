"""Where the ``llm`` agent gets its Temporal client, and how it borrows another agent's hooks.

The worker hands its client over at build time with ``use_client(client)``; without it the agent
connects on first use with ``aiops.connection.connect()`` (the worker's environment settings).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity
from temporalio.client import Client

from agents.base_agent import BaseAgent
from aiops.contracts.models import AgentConfig

_client: Client | None = None
_connecting: asyncio.Lock | None = None


def use_client(client: Client | None) -> None:
    """The client the llm agent starts diagnoses with (the worker's own); None forgets it."""
    global _client
    _client = client


async def get_client() -> Client:
    global _client, _connecting
    if _client is not None:
        return _client
    if _connecting is None:
        _connecting = asyncio.Lock()
    async with _connecting:
        if _client is None:
            from aiops.connection import connect

            _client = await connect(service_name="aiops-llm")
    return _client


# Model requests and tool calls heartbeat this often; their activities' heartbeat timeout is
# ``HEARTBEAT_TIMEOUT_SECONDS`` (agents/llm/diagnosis.py), so a killed worker's call is retried on
# another worker within that, not after its whole start-to-close timeout.
HEARTBEAT_TIMEOUT_SECONDS = 15.0
HEARTBEAT_EVERY_SECONDS = 3.0


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat the current activity while the body runs (nothing outside an activity)."""
    if not activity.in_activity():
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)

    beater = asyncio.create_task(beat())
    try:
        yield
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater


@asynccontextmanager
async def peer_agent(config: AgentConfig) -> AsyncIterator[BaseAgent]:
    """A private, running instance of another agent (its secrets resolved on this worker) for one
    read-only hook call (detect or a dry-run plan), stopped afterwards."""
    from activities.secrets import resolve_secrets
    from agents.registry import default_factory

    agent = default_factory.create(resolve_secrets(config))
    await agent.initialize()
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
