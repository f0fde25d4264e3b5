"""The seed's example agent (type ``example``): drift in, a Terraform plan out.

It performs no real Terraform call; it describes the plan it would produce from
the drift the event reports, which is what the README walk-through, the demo
and the tests need from it. It is also the smallest complete use of the agent SDK:
a settings model (``ExampleSettings``, the class's type parameter) and the action
ledger (``agents.ledger``) that makes a retried execution answer with its first result.
"""

from __future__ import annotations

import shutil
import tempfile

from pydantic import Field

from agents import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentConfig,
    BaseAgent,
    EventType,
    Plan,
    RiskLevel,
    Severity,
    SystemEvent,
    register_agent,
)
from agents.ledger import ActionLedger
from agents.settings import AgentSettings

RISK_BY_SEVERITY = {
    Severity.INFO: RiskLevel.LOW,
    Severity.LOW: RiskLevel.LOW,
    Severity.MEDIUM: RiskLevel.MEDIUM,
    Severity.HIGH: RiskLevel.HIGH,
    Severity.CRITICAL: RiskLevel.CRITICAL,
}


class ExampleSettings(AgentSettings):
    """What an ``example`` agent may be configured with (unknown keys are refused)."""

    workspace: str = Field(default="default", strict=True, min_length=1, max_length=200)
    """The workspace an event names when it does not name its own."""
    state_dir: str | None = Field(default=None, strict=True, min_length=1)
    """Where the action ledger lives; unset, results are remembered in this process only."""


def drifted_resources(event: SystemEvent) -> list[str]:
    resources = event.data.get("resources")
    if isinstance(resources, list) and resources:
        return [str(r) for r in resources]
    return [event.source]


@register_agent("example")
class ExampleAgent(BaseAgent[ExampleSettings]):
    pure_decisions = True  # deciding reads only the event and the settings

    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self._scratch: str | None = None

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
            parameters={"workspace": event.data.get("workspace", self.settings.workspace)},
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
        # same action. The ledger, keyed by the action's idempotency key, answers a repeat with
        # the first outcome; a real agent records its intent before acting (entry.intend) and its
        # steps (entry.step) so that a retry after a crash can resume.
        async with self._ledger.entry(action) as entry:
            done = entry.done_result()
            if done is not None:
                return done
            workspace = action.parameters.get("workspace", self.settings.workspace)
            return entry.finish(
                ActionResult(
                    success=True,
                    message=(
                        f"Terraform plan generated for {len(action.target_resources)} resource(s) "
                        f"in workspace {workspace}: {', '.join(action.target_resources)}"
                    ),
                    data={"workspace": workspace, "planned_changes": len(action.target_resources)},
                )
            )

    @property
    def _ledger(self) -> ActionLedger:
        if self.settings.state_dir is not None:
            return ActionLedger(self.settings.state_dir)
        if self._scratch is None:  # no durable folder configured: this instance's own, until stop
            self._scratch = tempfile.mkdtemp(prefix="aiops-example-")
        return ActionLedger(self._scratch)

    async def _stop_agent_specific(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT]
