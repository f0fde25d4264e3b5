"""Approval expiry on the time-skipping test server: escalate once, then expire as rejected.

Hours of approval timeout pass in moments; nothing above low risk is ever
approved by a timeout.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import ApprovalRule
from aiops.contracts.models import RiskLevel
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from tests.support.time_skipping import time_skipping_server


@pytest_asyncio.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as env:
        yield env


@pytest_asyncio.fixture
async def skipping(skipping_env: WorkflowEnvironment) -> AsyncIterator[AiopsClient]:
    LEDGER.clear()
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(skipping_env.client, task_queue, AgentActivities(client=skipping_env.client)):
        yield AiopsClient(skipping_env.client, task_queue)


async def test_unanswered_approval_escalates_once_then_expires(
    skipping: AiopsClient, skipping_env: WorkflowEnvironment, caplog
) -> None:
    approval = team()
    approval.rules[RiskLevel.HIGH] = ApprovalRule(roles=["sre"], timeout_seconds=4 * 3600)
    config = agent_config("scripted", approval=approval)
    _, action_id, _ = await start_pending_action(skipping, config, "high")
    await skipping_env.sleep(4 * 3600 - 60)
    assert (await skipping.approvals.action(action_id)).escalated is False
    await skipping_env.sleep(4 * 3600 + 120)
    record = await skipping.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.EXPIRED
    assert record.escalated is True
    assert record.approvals == []
    assert "a timeout never approves an action" in (record.error or "")
    assert LEDGER["attempt"] == []
    waited = record.history[-1].at - next(
        h.at for h in record.history if h.status == ActionStatus.PENDING_APPROVAL
    )
    assert waited.total_seconds() >= 8 * 3600, "timeout plus one extension of the same length"
    assert any("ESCALATION to on-call" in r.getMessage() for r in caplog.records)


async def test_expiry_without_escalation_rejects_at_the_first_deadline(
    skipping: AiopsClient, skipping_env: WorkflowEnvironment
) -> None:
    approval = team().model_copy(update={"on_expiry": "reject"})
    config = agent_config("scripted", approval=approval)
    _, action_id, _ = await start_pending_action(skipping, config, "critical")
    await skipping_env.sleep(3600 + 60)  # the default critical timeout is one hour
    record = await skipping.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.EXPIRED
    assert record.escalated is False


async def test_an_approval_after_escalation_still_counts(
    skipping: AiopsClient, skipping_env: WorkflowEnvironment
) -> None:
    approval = team()
    approval.rules[RiskLevel.MEDIUM] = ApprovalRule(roles=["sre"], timeout_seconds=3600)
    config = agent_config("scripted", approval=approval)
    _, action_id, record = await start_pending_action(skipping, config, "medium")
    assert record.escalated is False
    await skipping_env.sleep(3600 + 60)  # past the first deadline, inside the extension
    record = await eventually(lambda: skipping.approvals.action(action_id), lambda r: r.escalated)
    assert record.status == ActionStatus.PENDING_APPROVAL
    await skipping.approvals.approve(action_id, "alice", "saw the escalation")
    done = await skipping.approvals.wait_for_action(action_id)
    assert done.status == ActionStatus.VERIFIED


async def test_escalation_to_an_agent_delivers_an_alert_event(
    skipping: AiopsClient, skipping_env: WorkflowEnvironment
) -> None:
    alerting = agent_config("recorder")
    await skipping.agents.start(alerting)
    approval = team().model_copy(update={"escalation_target": f"agent:{alerting.id}"})
    config = agent_config("scripted", approval=approval)
    _, action_id, _ = await start_pending_action(skipping, config, "high")
    await skipping_env.sleep(4 * 3600 + 60)
    status = await eventually(
        lambda: skipping.agents.status(alerting.id), lambda s: s.counters.events_processed == 1
    )
    assert status.counters.events_received == 1
    assert LEDGER["decided"] == [f"escalation-{hashlib.sha256(action_id.encode()).hexdigest()[:32]}"]
    record = await skipping.approvals.action(action_id)
    assert record.escalated and record.status == ActionStatus.PENDING_APPROVAL
