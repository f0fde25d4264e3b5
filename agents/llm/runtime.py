"""Where the ``llm`` agent gets its Temporal client, and how it borrows another agent's hooks.

The client is the worker's own, from the framework services the worker runtime installs
(``agents.services``); outside a worker asking for it raises ``FrameworkServicesUnavailableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity
from temporalio.client import Client

from agents.base_agent import BaseAgent
from agents.services import framework_services
from aiops.contracts.config import AgentConfig


def get_client() -> Client:
    """The worker's Temporal client, to start diagnoses and reach budget ledgers and agents."""
    return framework_services().client


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
    from agents.registry import default_factory
    from agents.secrets import resolve_secrets

    agent = default_factory.create(resolve_secrets(config))
    await agent.initialize()
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
