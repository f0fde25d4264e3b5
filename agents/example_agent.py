"""The seed's example agent (type ``example``): drift in, a Terraform plan out.

It performs no real Terraform call; it describes the plan it would produce from
the drift the event reports, which is what the README walk-through, the demo
and the tests need from it.
"""

from __future__ import annotations

from agents.base_agent import BaseAgent
from agents.registry import register_agent
from aiops.contracts.models import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentConfig,
    EventType,
    Plan,
    RiskLevel,
    Severity,
    SystemEvent,
)

RISK_BY_SEVERITY = {
    Severity.INFO: RiskLevel.LOW,
    Severity.LOW: RiskLevel.LOW,
    Severity.MEDIUM: RiskLevel.MEDIUM,
    Severity.HIGH: RiskLevel.HIGH,
    Severity.CRITICAL: RiskLevel.CRITICAL,
}


def drifted_resources(event: SystemEvent) -> list[str]:
    resources = event.data.get("resources")
    if isinstance(resources, list) and resources:
        return [str(r) for r in resources]
    return [event.source]


@register_agent("example")
class ExampleAgent(BaseAgent):
    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self._done: dict[str, ActionResult] = {}  # outcome per idempotency key

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.type != EventType.INFRASTRUCTURE_DRIFT:
            return None
        targets = drifted_resources(event)
        return AgentAction(
            id=f"action_{event.id}",
            agent_id=self.agent_id,
            type=ActionType.TERRAFORM_PLAN,
            description=f"Generate Terraform plan for drift in {event.source}",
            target_resources=targets,
            risk_level=RISK_BY_SEVERITY[event.severity],
            estimated_impact=f"Plan only: shows what would reconcile {len(targets)} resource(s)",
            parameters={"workspace": event.data.get("workspace", "default")},
        )

    async def _plan_specific(self, action: AgentAction) -> Plan:
        changes = [f"~ {resource} (reconcile to declared state)" for resource in action.target_resources]
        workspace = action.parameters.get("workspace")
        return Plan(
            summary=f"{len(changes)} resource(s) to reconcile in workspace {workspace}",
            details="\n".join(changes),
            changes=changes,
        )

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        # At least once: a retry (or another worker, after a crash) may call this again for the
        # same action. Key the side effect by action.idempotency_key and answer a repeat with the
        # first outcome. A real agent keeps the key where the change happens (a tag on the
        # resource, a row in its own table); this example only remembers it in memory.
        key = action.idempotency_key or action.id
        if key in self._done:
            return self._done[key]
        workspace = action.parameters.get("workspace", "default")
        self._done[key] = ActionResult(
            success=True,
            message=(
                f"Terraform plan generated for {len(action.target_resources)} resource(s) "
                f"in workspace {workspace}: {', '.join(action.target_resources)}"
            ),
            data={"workspace": workspace, "planned_changes": len(action.target_resources)},
        )
        return self._done[key]

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT]

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        workspace = config.settings.get("workspace")
        if workspace is not None and not isinstance(workspace, str):
            return ["settings.workspace must be a string"]
        return []
