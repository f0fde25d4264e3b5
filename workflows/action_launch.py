"""Turning an agent's proposal into its own ActionWorkflow: identity, policy, bookkeeping.

The action id derives from the agent and the event, and the child is started
with REJECT_DUPLICATE, so a redelivered event can never create a second action;
ABANDON lets actions outlive their agent's run (continue-as-new, stop).
"""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.action import ActionInput, ActionStatus, action_workflow_id
    from aiops.contracts.agent import AgentRunState, AgentState, PendingAction, hooks_task_queue
    from aiops.contracts.budgets import ACTION_INPUT_BUDGET, largest_fields, measure
    from aiops.contracts.errors import AiopsError
    from aiops.contracts.models import AgentAction, RiskLevel, SystemEvent
    from aiops.contracts.policy import Outcome, decide
    from workflows.action.details import inbox_summary, static_details, static_summary
    from workflows.action.workflow import ActionWorkflow
    from workflows.agent.state import policy_context


# Temporal's task-queue priority (1 first .. 5 last, 3 by default): an action's workflow tasks
# and, since they inherit it, its activities (plan, execute, verify, notices) are dispatched by
# risk, so under a storm critical and high-risk work waits behind no low-risk backlog.
PRIORITY_BY_RISK = {RiskLevel.CRITICAL: 1, RiskLevel.HIGH: 2, RiskLevel.MEDIUM: 3, RiskLevel.LOW: 4}


def action_priority(risk: RiskLevel) -> Priority:
    return Priority(priority_key=PRIORITY_BY_RISK.get(risk, 3))


class ActionTooLargeError(AiopsError):
    """The composed action input is over its budget: the proposal is refused, not started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_action_input(input: ActionInput, extra: int = 0) -> str | None:
    """Why ``input`` cannot be carried by a child workflow start, or None when it fits.

    Measured before the start command: over Temporal's payload limit the command would fail the
    agent's workflow task on every retry and wedge the agent. The reason names what weighs.
    """
    measured = measure("the action's start input", input, ACTION_INPUT_BUDGET)
    measured = replace(measured, size=measured.size + extra)  # + its summary and details
    if measured.fits:
        return None
    heaviest = []
    for name, size in largest_fields(input, top=2):
        part = getattr(input, name)
        inner = largest_fields(part, top=1) if hasattr(type(part), "model_fields") else []
        heaviest.append(f"{name}.{inner[0][0]}" if inner and inner[0][1] > size // 2 else name)
        heaviest[-1] += f" ({size:,} bytes)"
    return f"{measured.reason}; the largest parts: {', '.join(heaviest)}"


async def launch_action(s: AgentRunState, event: SystemEvent, proposed: AgentAction) -> bool:
    """Decide the policy for ``proposed`` and start its workflow; False if it was a duplicate.

    Raises ``ActionTooLargeError`` (before anything is recorded or started) when the composed input
    is over its budget.
    """
    action_id = action_workflow_id(s.config.id, event.id)
    if action_id in s.pending_actions:  # the same event twice in one batch, or redelivered
        s.counters.actions_duplicate += 1
        return False
    action: AgentAction = proposed.model_copy(
        update={
            "id": action_id,
            "agent_id": s.config.id,
            "event_id": event.id,
            "correlation_id": proposed.correlation_id or event.correlation_id or event.id,
            "requested_by": proposed.requested_by or f"agent:{s.config.id}",
        }
    )
    now = workflow.now()
    verdict = decide(s.config, action, policy_context(s, now))
    input = ActionInput(
        action=action,
        event=event,
        config=s.config,
        agent_workflow_id=workflow.info().workflow_id,
        decision=verdict,
        held=s.state == AgentState.PAUSED,
        hold_epoch=s.hold_epoch,
        audit_log=s.audit_log,
        has_plan=s.has_plan,
    )
    summary, details = static_summary(action), static_details(action, event, verdict, action_id)
    too_large = check_action_input(input, extra=len(summary.encode()) + len(details.encode()))
    if too_large is not None:
        raise ActionTooLargeError(too_large)
    auto = verdict.outcome == Outcome.AUTO_EXECUTE
    if auto:  # counted before the await, so the next action in this batch sees it
        s.auto_executions.append(now)
    s.counters.actions_proposed += 1
    s.pending_actions[action_id] = PendingAction(
        action_id=action_id,
        event_id=event.id,
        status=ActionStatus.PROPOSED.value,
        risk_level=action.risk_level,
        description=action.description[:200],
        proposed_at=now,
    )
    try:
        await workflow.start_child_workflow(
            ActionWorkflow.run,
            input,
            id=action_id,
            # On the agent type's own queue, where only workers that have the type poll: the
            # action's hooks (plan, execute, verify) are scheduled on the queue of the workflow
            # that schedules them, so the worker completing the task starts them at once (eager
            # activity dispatch), a round trip through matching less (docs/scale.md, "Latency").
            task_queue=hooks_task_queue(workflow.info().task_queue, s.config.type),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            priority=action_priority(action.risk_level),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.AGENT_ID, s.config.id),
                    SearchAttributePair(sa.AGENT_TYPE, s.config.type),
                    SearchAttributePair(sa.RISK_LEVEL, action.risk_level.value),
                    SearchAttributePair(sa.ACTION_STATUS, ActionStatus.PROPOSED.value),
                    SearchAttributePair(sa.SUMMARY, inbox_summary(action)),
                    # The inbox's other columns, set here rather than upserted by the action's
                    # first task (workflows/action/publishing.py upserts only what differs).
                    SearchAttributePair(sa.REQUESTED_AT, now),
                    SearchAttributePair(sa.APPROVALS, 0),
                    SearchAttributePair(sa.APPROVALS_NEEDED, verdict.required_approvals),
                ]
            ),
            static_summary=summary,
            static_details=details,
        )
    except WorkflowAlreadyStartedError:
        # Started before, by an earlier run or before a dedup window forgot the event.
        del s.pending_actions[action_id]
        if auto:
            s.auto_executions.remove(now)
        s.counters.actions_proposed -= 1
        s.counters.actions_duplicate += 1
        workflow.logger.info("action %s already exists, not starting it again", action_id)
    return True  # a start was attempted: it counts towards the run's child limit
