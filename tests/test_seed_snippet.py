"""The seed's own examples, with only their import lines changed, run on the real stack."""

from __future__ import annotations

# ---- import lines: the only lines changed from the seed ------------------------------
import uuid
from typing import List, Optional

from agents import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentConfig,
    AgentType,
    AutomationLevel,
    BaseAgent,
    EventType,
    Integration,
    RiskLevel,
    SystemEvent,
    register_agent,
)

# ---- "Creating a New Agent", verbatim ------------------------------------------------


class MyCustomAgent(BaseAgent):
    async def _initialize_agent_specific(self) -> None:
        # Initialize agent-specific resources
        pass

    async def _start_agent_specific(self) -> None:
        # Start agent-specific services
        pass

    async def _stop_agent_specific(self) -> None:
        # Clean up agent-specific resources
        pass

    async def _process_event_specific(self, event: SystemEvent) -> Optional[AgentAction]:
        # Process events and generate actions
        pass

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        # Execute agent actions
        pass

    async def _reload_config_specific(self, old_config, new_config) -> None:
        # Handle configuration changes
        pass

    def _get_subscribed_event_types(self) -> List[EventType]:
        # Return event types this agent handles
        return [EventType.INFRASTRUCTURE_DRIFT]


# ---- "Event Processing" and "Action Execution", verbatim in one agent ----------------


class SeedTerraformAgent(MyCustomAgent):
    async def _process_event_specific(self, event: SystemEvent) -> Optional[AgentAction]:
        if event.type == EventType.INFRASTRUCTURE_DRIFT:
            return AgentAction(
                id=f"action_{uuid.uuid4()}",
                agent_id=self.agent_id,
                type=ActionType.TERRAFORM_PLAN,
                description="Generate Terraform plan for drift",
                target_resources=[event.source],
                risk_level=RiskLevel.LOW,
                estimated_impact="Generate plan to show changes"
            )
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        try:
            # Perform the actual work
            result_data = await self._perform_terraform_plan(action.target_resources)

            return ActionResult(
                success=True,
                message="Terraform plan generated successfully",
                data=result_data
            )
        except Exception as e:
            return ActionResult(
                success=False,
                message="Failed to generate Terraform plan",
                error=str(e)
            )

    async def _perform_terraform_plan(self, resources):  # the seed leaves this to the author
        return {"planned": resources}


# ---- the seed's "Agent Configuration", verbatim but for the secret ------------------
# The seed writes the token as a literal ("..."); secrets are references now (issue 4),
# so the verbatim example is refused (tested below) and this one says "env:TF_TOKEN".


def seed_config(**changes) -> AgentConfig:
    config = AgentConfig(
        id="my_agent",
        name="My Custom Agent",
        type=AgentType.TERRAFORM,
        enabled=True,
        automation_level=AutomationLevel.SEMI_AUTO,
        thresholds={"cpu_threshold": 80.0},
        approval_required=True,
        integrations=[
            Integration(
                name="terraform",
                type="terraform_cloud",
                config={"token": "env:TF_TOKEN", "organization": "..."}
            )
        ]
    )
    return config.model_copy(update=changes)


def seed_config_verbatim() -> AgentConfig:
    return AgentConfig(
        id="my_agent",
        name="My Custom Agent",
        type=AgentType.TERRAFORM,
        enabled=True,
        automation_level=AutomationLevel.SEMI_AUTO,
        thresholds={"cpu_threshold": 80.0},
        approval_required=True,
        integrations=[
            Integration(
                name="terraform",
                type="terraform_cloud",
                config={"token": "...", "organization": "..."}
            )
        ]
    )


# ---- the tests -----------------------------------------------------------------------

import os

import pytest
from pydantic import ValidationError

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import event, eventually

os.environ.setdefault("TF_TOKEN", "a-test-token")  # what the worker resolves "env:TF_TOKEN" to
register_agent("seed_snippet")(MyCustomAgent)
register_agent("seed_terraform")(SeedTerraformAgent)


def test_the_seeds_literal_token_is_refused_with_the_reference_to_write() -> None:
    with pytest.raises(ValidationError) as refused:
        seed_config_verbatim()
    message = str(refused.value)
    assert "config.token: a secret must be a reference" in message
    assert '"env:TOKEN"' in message
    assert "input_value" not in message  # a refused secret is never echoed back


def test_seed_config_keeps_the_seed_field_names() -> None:
    config = seed_config()
    assert config.type == "terraform"
    assert config.automation_level == "semi_auto"
    assert config.integrations[0].config["organization"] == "..."
    assert config.model_dump(mode="json")["automation_level"] == "semi_auto"


async def test_snippet_agent_runs_in_a_workflow(aiops: AiopsClient, worker) -> None:
    config = seed_config(id="seed-snippet-agent", type="seed_snippet")
    await aiops.agents.start(config)
    await aiops.events.send_many(config.id, [event("infrastructure_drift"), event("alert")])
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1
    )
    assert status.counters.events_filtered == 1
    assert status.counters.actions_proposed == 0  # its _process_event_specific returns None


async def test_seed_event_and_execution_examples_run_end_to_end(aiops: AiopsClient, worker) -> None:
    config = seed_config(id="seed-terraform-agent", type="seed_terraform", approval_required=False)
    await aiops.agents.start(config)
    drift = event("infrastructure_drift", source="module.vpc")
    await aiops.events.send(config.id, drift)
    action_id = aiops.approvals.action_id(config.id, drift.id)
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.SUCCEEDED
    assert record.result is not None
    assert record.result.message == "Terraform plan generated successfully"
    assert record.result.data == {"planned": ["module.vpc"]}
    assert record.action.id == action_id, "the framework owns the idempotency key"
