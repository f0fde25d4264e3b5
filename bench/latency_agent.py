"""The latency benchmarks' agents: execution reports when it began (approved by a person, or auto)."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity

from agents import (
    ActionResult,
    ActionType,
    AgentAction,
    BaseAgent,
    EventType,
    RiskLevel,
    SystemEvent,
    register_agent,
)


@register_agent("bench_approval")
class ApprovalLatencyAgent(BaseAgent):
    """Every event proposes a high-risk action: it waits for an approval."""

    RISK = RiskLevel.HIGH

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        return AgentAction(
            id="-", agent_id=self.agent_id, type=ActionType.RESTART_SERVICE,
            description=f"restart {event.source}", target_resources=[event.source], risk_level=self.RISK,
        )  # fmt: skip

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        scheduled = activity.info().current_attempt_scheduled_time.timestamp()
        return ActionResult(success=True, data={"started_at": time.time(), "scheduled_at": scheduled})

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]


@register_agent("bench_auto")
class AutoLatencyAgent(ApprovalLatencyAgent):
    """Every event proposes a low-risk action, which the default (semi-auto) policy runs at once."""

    RISK = RiskLevel.LOW


@register_agent("bench_triage")
class TriageLatencyAgent(ApprovalLatencyAgent):
    """A high-risk action for a critical or high event, or one marked ``data.sample`` (the
    benchmark's samples); the rest are decided with none, after 1 ms (an agent that looks
    something up for each event: what makes a backlog take time to decide)."""

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.severity not in ("critical", "high") and not event.data.get("sample"):
            await asyncio.sleep(0.001)
            return None
        return await super()._process_event_specific(event)
