"""What the agent shows of itself outside its queries: search attributes and current details.

``AgentState`` and ``AiopsHealth`` are what the Web UI, ``aiops agents list`` and the health
monitor find agents by; the health summary (aiops/contracts/health_summary.py) is upserted only
when it changes, so a healthy agent publishes ``ok`` once and no more.
"""

from __future__ import annotations

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


async def publish_health(s: AgentRunState) -> None:
    """Keep ``AiopsHealth`` in line with the state, for the run's whole life (a task of its own)."""

    name = sa.HEALTH.name

    def changed() -> bool:
        """Asked after every step of every activation (1.6% of the worker's samples in the batched
        bench): the published value is found by the key's name, not by ``TypedSearchAttributes.get``, whose
        dataclass comparison of each key cost four times the summary itself (1.4 against 0.3 us).
        Nothing published yet: changed."""
        summary = health_summary(s)
        for pair in workflow.info().typed_search_attributes.search_attributes:
            if pair.key.name == name:
                return bool(summary != pair.value)
        return True

    while True:
        await workflow.wait_condition(changed)
        workflow.upsert_search_attributes([sa.HEALTH.value_set(health_summary(s))])
