"""The two workflows alone, with every activity replaced by a fake registered under the real name.

Fast tier: no PostgreSQL and no agent code, on the in-process time-skipping
test server, so backoffs of seconds or minutes pass at once. What is tested is
the workflows' own logic: batching and poison-event bisection, retries of
execute, verify and rollback, approval through the typed update.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.action_start import ActionStarter
from activities.agent_activities import AgentActivities
from activities.audit_activities import AuditActivities
from activities.config_activities import ConfigActivities
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.activities import (
    ActionCall,
    AgentInitialized,
    AuditBatch,
    ConfigProposal,
    DecideEventsInput,
    DecideEventsResult,
    EscalationNotice,
    EventDecision,
    ExecutionOutcome,
    PlannedHere,
    StoredConfig,
    VerifyCall,
)
from aiops.contracts.agent import hooks_task_queue
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import ActionResult, AgentAction, EventType, Plan
from tests.helpers import event, wait_pending
from tests.support.time_skipping import time_skipping_server
from workflows.action.workflow import ActionWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.sandbox import workflow_runner


def fake(method: Callable[..., Awaitable[Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the activity ``method`` (whose name is its method's)."""
    return activity.defn(name=method.__name__)


class Fakes:
    """Every activity the workflows call, with a log of calls and scripted failures."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.decided: list[str] = []
        self.execute_failures = 0
        self.verify_result = True

        @fake(ConfigActivities.register_config)
        async def register_config(proposal: ConfigProposal) -> StoredConfig | None:
            return None

        @fake(AgentActivities.initialize_agent)
        async def initialize_agent(config: AgentConfig) -> AgentInitialized:
            return AgentInitialized(agent_class="fake", subscribed_event_types=[EventType.ALERT])

        @fake(AgentActivities.decide_events)
        async def decide_events(request: DecideEventsInput) -> DecideEventsResult:
            self.calls["decide"] += 1
            if any(e.data.get("poison") for e in request.events):
                raise ApplicationError("the decision hook crashed")
            self.decided.extend(e.id for e in request.events)
            return DecideEventsResult(
                decisions=[
                    EventDecision(
                        event_id=e.id,
                        action=AgentAction(
                            id="x",
                            agent_id=request.config.id,
                            type="restart_service",
                            description="restart",
                            risk_level=e.data.get("risk", "low"),
                        )
                        if e.data.get("act")
                        else None,
                    )
                    for e in request.events
                ]
            )

        @fake(AgentActivities.stop_agent)
        async def stop_agent(config: AgentConfig) -> bool:
            return True

        @fake(AgentActivities.plan_action)
        async def plan_action(call: ActionCall) -> Plan | None:
            return Plan(summary="restart one service", changes=["restart api"])

        @fake(AgentActivities.plan_action_here)  # the local dry run (the action's worker has the type)
        async def plan_action_here(call: ActionCall) -> PlannedHere:
            return PlannedHere(planned=True, plan=await plan_action(call))

        @fake(AgentActivities.execute_action)
        async def execute_action(call: ActionCall) -> ExecutionOutcome:
            self.calls["execute"] += 1
            if self.calls["execute"] <= self.execute_failures:
                raise ApplicationError("transient failure")
            return ExecutionOutcome(result=ActionResult(success=True, message="restarted"))

        @fake(AgentActivities.verify_action)
        async def verify_action(call: VerifyCall) -> bool | None:
            self.calls["verify"] += 1
            return self.verify_result

        @fake(AgentActivities.rollback_action)
        async def rollback_action(call: ActionCall) -> ActionResult | None:
            self.calls["rollback"] += 1
            return ActionResult(success=True, message="put back")

        @fake(AgentActivities.notify_escalation)
        async def notify_escalation(notice: EscalationNotice) -> None:
            self.calls["escalation"] += 1

        @fake(AuditActivities.record_audit)
        async def record_audit(batch: AuditBatch) -> int:
            self.calls["audit_rows"] += len(batch.records)
            return len(batch.records)

        self.all = [
            register_config, initialize_agent, decide_events, stop_agent, plan_action, plan_action_here,
            execute_action, verify_action, rollback_action, notify_escalation, record_audit,
        ]  # fmt: skip


@pytest_asyncio.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as env:
        yield env


@pytest_asyncio.fixture
async def fakes(skipping: WorkflowEnvironment) -> AsyncIterator[tuple[AiopsClient, Fakes]]:
    task_queue = f"tq-{uuid.uuid4()}"
    faked = Fakes()
    hooks = hooks_task_queue(task_queue, "fake")  # where the agent type's code runs
    # The real ones: an action asks its agent, and an agent its action, over the client; and the
    # fast start path, which finds no "fake" type here and leaves the start to the fakes.
    real = AgentActivities(client=skipping.client)
    async with (
        Worker(
            skipping.client,
            task_queue=task_queue,
            workflows=[AgentWorkflow, ActionWorkflow],
            activities=[
                *faked.all,
                real.agent_hold_state,
                real.action_outcome,
                real.start_agent,
                ActionStarter(skipping.client).start_action,  # the agent starts its actions
            ],
            workflow_runner=workflow_runner(),
        ),
        # The type's queue runs its actions too (aiops/runtime/worker_build.py), with their hooks.
        Worker(
            skipping.client,
            task_queue=hooks,
            workflows=[ActionWorkflow],
            activities=[*faked.all, real.agent_hold_state, real.action_outcome],
            workflow_runner=workflow_runner(),
        ),
    ):
        yield AiopsClient(skipping.client, task_queue), faked


def config(**runtime: Any) -> AgentConfig:
    return AgentConfig(
        id=f"fake-{uuid.uuid4().hex[:6]}", name="fake", type="fake", runtime=runtime,
        approval={"approvers": [{"name": "alice", "roles": ["sre"]}], "allow_unsigned": True},
    )  # fmt: skip


async def stop_and_wait(aiops: AiopsClient, agent_id: str) -> Any:
    await aiops.agents.stop(agent_id, reason="test over", actor="alice")
    return await aiops.agents.handle(agent_id).result()


async def test_a_poison_event_is_bisected_out_and_the_rest_are_decided(
    fakes: tuple[AiopsClient, Fakes], skipping: WorkflowEnvironment
) -> None:
    aiops, faked = fakes
    cfg = config(batch_size=8, local_decisions=False)
    await aiops.agents.start(cfg)
    events = [event("alert") for _ in range(7)]
    poison = event("alert", poison=True)
    await aiops.events.send_many(cfg.id, [*events[:3], poison, *events[3:]])
    await skipping.sleep(600)  # the backoffs between failed batches (2 s, 4 s, ... 32 s) pass at once
    status = await aiops.agents.status(cfg.id)
    assert sorted(faked.decided) == sorted(e.id for e in events)
    assert status.counters.events_processed == 8
    assert status.counters.decision_errors == 1
    assert status.queue_length == 0
    assert any("gave up on event after 3 failed decisions" in p.message for p in status.recent_errors)


async def test_execution_retries_then_a_failed_verification_rolls_back(
    fakes: tuple[AiopsClient, Fakes],
) -> None:
    aiops, faked = fakes
    faked.execute_failures, faked.verify_result = 2, False
    cfg = config()
    await aiops.agents.start(cfg)
    e = event("alert", act=True)
    await aiops.events.send(cfg.id, e)
    record = await aiops.approvals.wait_for_action(aiops.approvals.action_id(cfg.id, e.id))
    assert record.status == ActionStatus.ROLLED_BACK
    assert (faked.calls["execute"], faked.calls["verify"], faked.calls["rollback"]) == (3, 1, 1)
    assert record.plan is not None and record.plan_digest
    await stop_and_wait(aiops, cfg.id)
    assert faked.calls["audit_rows"] > 0


async def test_an_approval_through_the_typed_update_executes_once(fakes: tuple[AiopsClient, Fakes]) -> None:
    aiops, faked = fakes
    cfg = config()
    await aiops.agents.start(cfg)
    e = event("alert", act=True, risk="high")
    await aiops.events.send(cfg.id, e)
    action_id = aiops.approvals.action_id(cfg.id, e.id)
    pending = await wait_pending(aiops, action_id)
    approved = await aiops.approvals.approve(action_id, "alice", plan_digest=pending.plan_digest)
    assert [a.approver for a in approved.approvals] == ["alice"]
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.VERIFIED and faked.calls["execute"] == 1
    await stop_and_wait(aiops, cfg.id)
