"""What the agent shows of itself outside its queries: search attributes and current details.

``AgentState`` and ``AiopsHealth`` are what the Web UI, ``aiops agents list`` and the health
monitor find agents by; the health summary (aiops/contracts/health_summary.py) is upserted only
when it changes, so a healthy agent publishes ``ok`` once and no more.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.agent import AgentRunState
    from aiops.contracts.health_summary import health_summary


def publish_state(s: AgentRunState) -> None:
    workflow.upsert_search_attributes(
        [
            sa.AGENT_ID.value_set(s.config.id),
            sa.AGENT_TYPE.value_set(s.config.type),
            sa.AGENT_STATE.value_set(s.state.value),
            sa.HEALTH.value_set(health_summary(s)),
        ]
    )
    workflow.set_current_details(
        f"**{s.config.name}** ({s.config.type}) is *{s.state.value}*; config version {s.config.version}"
    )


class HealthWatch:
    """Keeps ``AiopsHealth`` in line with the state for the run's whole life, at no cost while idle.

    It was a task of its own (``while True: await wait_condition(changed); upsert``): per cached
    agent an ``asyncio.Task`` and its name, four coroutine frames, a future, closures and a copied
    context, about 2.5 KB kept for ever by an agent that mostly sleeps. This does the same with a
    future in the SDK's list of conditions and a callback on it: the SDK checks the condition
    where it checked the task's, resolves the future at the same point, and the callback runs in
    the ready queue where the task's wake-up ran, so every upsert lands where it did (the recorded
    histories replay unchanged). The list is the SDK's own (``_conditions``: what
    ``wait_condition`` appends to); where it is missing the task is used as before.
    """

    __slots__ = ("_s",)

    def __init__(self, s: AgentRunState) -> None:
        self._s = s

    def start(self) -> asyncio.Task[None] | None:
        """Begin watching; the first check is armed where the task would have first run."""
        if not isinstance(getattr(asyncio.get_running_loop(), "_conditions", None), list):
            return asyncio.create_task(publish_health(self._s))  # an SDK without the list
        asyncio.get_running_loop().call_soon(self._arm)
        return None

    def _changed(self) -> bool:
        return health_summary(self._s) != workflow.info().typed_search_attributes.get(sa.HEALTH)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        changed: asyncio.Future[bool] = loop.create_future()
        changed.add_done_callback(self._publish)
        loop._conditions.append((self._changed, changed))  # type: ignore[attr-defined]

    def _publish(self, changed: asyncio.Future[bool]) -> None:
        if changed.cancelled():
            return
        workflow.upsert_search_attributes([sa.HEALTH.value_set(health_summary(self._s))])
        self._arm()


async def publish_health(s: AgentRunState) -> None:
    """The task ``HealthWatch`` replaces where the SDK keeps its conditions elsewhere."""

    def changed() -> bool:
        return health_summary(s) != workflow.info().typed_search_attributes.get(sa.HEALTH)

    while True:
        await workflow.wait_condition(changed)
        workflow.upsert_search_attributes([sa.HEALTH.value_set(health_summary(s))])
