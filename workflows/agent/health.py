"""What the agent shows of itself outside its queries: search attributes and current details.

``AgentState`` and ``AiopsHealth`` are what the Web UI, ``aiops agents list`` and the health
monitor find agents by; the health summary (aiops/contracts/health_summary.py) is upserted only
when it changes, so a healthy agent publishes ``ok`` once and no more. A ``backlog`` flag the
watch published stays for ``BACKLOG_HOLD`` at least: a busy agent's queue swings across the
summary's level within every workflow task, and each crossing was an upsert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.agent import AgentRunState
    from aiops.contracts.health_summary import BACKLOG, OK, health_summary

# How long a ``backlog`` flag the watch published stays before it may clear. Taking 100 events an
# update, 8 updates in flight, an agent's queue goes from empty to about 800 and back within a
# workflow task: the batched bench upserted ``backlog`` and ``ok`` 25 times each per 20,000
# events, about 1.4 ms of the dev server's CPU each (0.07 CPU-s a run against the run without).
# Held, it is one pair per BACKLOG_HOLD and a timer. Only ever more cautious: ``backlog`` is
# published at once, ``ok`` still only with the queue at or under the level, so what ``ok``
# promises the monitor (health_summary.py) holds; the flag may stay this long after a drain.
BACKLOG_HOLD = timedelta(seconds=10)
# Marks the runs that hold the flag (their commands differ where the queue drops under the level
# within BACKLOG_HOLD of a published backlog: a timer instead of an upsert). Deprecate
# (workflow.deprecate_patch) once every agent has continued as new on a build with it; remove
# with the next history generation (g2_), docs/deploy.md "A patch's lifecycle".
BACKLOG_HOLD_PATCH = "health-backlog-hold"


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


async def publish_health(s: AgentRunState) -> None:
    """Keep ``AiopsHealth`` in line with the state, for the run's whole life (a task of its own)."""

    name = sa.HEALTH.name

    def published() -> str | None:
        """The published summary, found by the key's name: ``TypedSearchAttributes.get`` compares
        each key as a dataclass (1.4 us against 0.3 us for the summary itself), and ``changed``
        is asked after every step of every activation (1.6% of the worker's samples in the
        batched bench)."""
        for pair in workflow.info().typed_search_attributes.search_attributes:
            if pair.key.name == name:
                return str(pair.value)
        return None

    def changed() -> bool:
        return health_summary(s) != published()

    backlog_since: datetime | None = None  # when this watch published a backlog flag
    while True:
        await workflow.wait_condition(changed)
        summary, shown = health_summary(s), published()
        if backlog_since is not None and holds_backlog(shown, summary):
            left = (backlog_since + BACKLOG_HOLD - workflow.now()).total_seconds()
            # Asked only where the hold changes what is done (the patch's marker is a command).
            if left > 0 and workflow.patched(BACKLOG_HOLD_PATCH):
                try:  # anything else that changes is published at once
                    await workflow.wait_condition(_moved(s, summary, shown), timeout=left)
                except TimeoutError:
                    pass
                continue
        workflow.upsert_search_attributes([sa.HEALTH.value_set(summary)])
        backlog_since = workflow.now() if BACKLOG in summary.split(",") else None


def _moved(s: AgentRunState, held: str, shown: str | None) -> Callable[[], bool]:
    """Whether the summary is now neither ``held`` (the flag dropped) nor ``shown`` (back)."""
    return lambda: health_summary(s) not in (held, shown)


def holds_backlog(shown: str | None, summary: str) -> bool:
    """Whether ``summary`` differs from the published ``shown`` by the ``backlog`` flag alone,
    dropped (the only change a hold may delay)."""
    if shown is None:
        return False
    flags = shown.split(",")
    if BACKLOG not in flags:
        return False
    rest = ",".join(f for f in flags if f != BACKLOG)
    return summary == (rest or OK)
