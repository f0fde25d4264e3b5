"""Critical work first: an action's workflow (and the activities that inherit it) carries a
task-queue priority by its risk."""

from __future__ import annotations

from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.contracts.models import RiskLevel
from tests.helpers import agent_config, event, eventually, team
from workflows.action_launch import PRIORITY_BY_RISK, action_priority


def test_priority_follows_risk() -> None:
    keys = [
        action_priority(r).priority_key or 0
        for r in (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW)
    ]
    assert keys == sorted(keys) and keys[0] == 1 and len(set(keys)) == 4
    assert set(PRIORITY_BY_RISK) == set(RiskLevel)


async def test_actions_are_started_with_their_risks_priority(
    aiops: AiopsClient, client: Client, worker: object
) -> None:
    for risk in ("critical", "low"):  # the low one runs on its own, the critical one waits
        config = agent_config("scripted", approval=team())
        await aiops.agents.start(config)
        sent = event("alert", risk=risk)
        await aiops.events.send(config.id, sent)
        action_id = aiops.approvals.action_id(config.id, sent.id)
        handle = client.get_workflow_handle(action_id)
        described = await eventually(handle.describe, bool)
        priority = described.raw_description.workflow_execution_info.priority
        assert priority.priority_key == PRIORITY_BY_RISK[RiskLevel(risk)]
