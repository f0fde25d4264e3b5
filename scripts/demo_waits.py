"""Waiting on what the demo's workers do: ask again every 0.1 s, up to a bound, never a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiops.client import AiopsClient

T = TypeVar("T")


async def poll(look: Callable[[], Awaitable[T]], attempts: int, done: Callable[[T], bool] = bool) -> T:
    """Ask ``look`` every 0.1 s until its answer is ``done`` (by default: anything at all) or
    ``attempts`` are spent; its last answer either way. The demo waits on what the workers do, not
    on a fixed sleep."""
    found = await look()
    for _ in range(attempts - 1):
        if done(found):
            break
        await asyncio.sleep(0.1)
        found = await look()
    return found


async def run_detector(aiops: AiopsClient, agent_id: str, attempts: int = 200) -> None:
    """Trigger the agent's detector schedule now (the agent creates it when it starts)."""
    schedule = aiops.client.get_schedule_handle(f"aiops-detector-{agent_id}")

    async def made() -> bool:
        try:
            await schedule.describe()
            return True
        except Exception:
            return False

    await poll(made, attempts)
    await schedule.trigger()


async def pending_action(aiops: AiopsClient, agent_id: str, attempts: int = 600) -> str | None:
    """The agent's first action waiting for approval (None if none came in time)."""
    waiting = await poll(lambda: aiops.approvals.pending(agent_id), attempts)
    return waiting[0] if waiting else None
