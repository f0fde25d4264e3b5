"""Turning an agent's proposal into its own ActionWorkflow: identity, policy, bookkeeping.

The action id derives from the agent and the event, and the action is started with
REJECT_DUPLICATE, so a redelivered event can never create a second action. Actions outlive their
agent's run (continue-as-new, stop). The agent starts each from its worker's own client in a local
activity, eagerly where that process runs the type's queue (``aiops/contracts/action_start.py``
says why and what it guarantees); runs recorded before that change started children, and still
replay so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.action_start import ActionStarter
    from aiops.contracts.action import ActionInput, ActionStatus, action_workflow_id
    from aiops.contracts.action_start import ActionStart, ActionStarted, inbox_attributes
    from aiops.contracts.agent import AgentRunState, AgentState, PendingAction, hooks_task_queue
    from aiops.contracts.budgets import ACTION_INPUT_BUDGET, largest_fields, measure
    from aiops.contracts.errors import AiopsError
    from aiops.contracts.models import AgentAction, RiskLevel, SystemEvent
    from aiops.contracts.policy import Outcome, decide
    from workflows.action.details import inbox_summary, static_details, static_summary
    from workflows.action.workflow import ActionWorkflow
    from workflows.agent.state import policy_context, record_outcome
    from workflows.failures import cause_message
    from workflows.local_arguments import compact


# Temporal's task-queue priority (1 first .. 5 last, 3 by default): an action's workflow tasks
# and, since they inherit it, its activities (plan, execute, verify, notices) are dispatched by
# risk, so under a storm critical and high-risk work waits behind no low-risk backlog.
PRIORITY_BY_RISK = {RiskLevel.CRITICAL: 1, RiskLevel.HIGH: 2, RiskLevel.MEDIUM: 3, RiskLevel.LOW: 4}


def action_priority(risk: RiskLevel) -> Priority:
    return Priority(priority_key=PRIORITY_BY_RISK.get(risk, 3))


class ActionRefusedError(AiopsError):
    """The proposal cannot become an action: refused (counted, audited), never started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActionTooLargeError(ActionRefusedError):
    """The composed action input is over its budget: the proposal is refused, not started."""


def check_action_input(input: ActionInput, extra: int = 0) -> str | None:
    """Why ``input`` cannot be carried by the action's start, or None when it fits.

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


async def launch_action(
    s: AgentRunState, event: SystemEvent, proposed: AgentAction, launched: set[str]
) -> bool:
    """Decide the policy for ``proposed`` and start its workflow; False if it was a duplicate.

    ``launched`` holds the action ids this run started from the worker (kept by the caller for
    the run): a run starts an action id at most once, which with the pending actions and the
    dedup window tells a repeated start of the agent's own from a duplicate
    (``aiops/contracts/action_start.py``, ``LAUNCH_MEMO``).

    Raises ``ActionRefusedError`` when the proposal cannot become an action: ``ActionTooLargeError``
    (before anything is recorded or started) when the composed input is over its budget, or the
    server refused the start as invalid (the bookkeeping undone).
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
    # The launch memo (under 200 bytes) fits in the budget's headroom under Temporal's 2 MB.
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
    input.launch = "client"
    started = await _start_from_worker(input, summary, details, now, launched)
    if started.outcome == "unavailable":
        input.launch = "child"
        started = await _start_as_child(input, summary, details, now)
    if started.outcome == "started":
        if started.ended is not None:  # an earlier attempt's action, already over: count its end
            record_outcome(s, started.ended)
        return True
    # Not started: undo the bookkeeping above.
    del s.pending_actions[action_id]
    if auto:
        s.auto_executions.remove(now)
    s.counters.actions_proposed -= 1
    if started.outcome == "refused":
        raise ActionRefusedError(started.reason)
    # Started before, by an earlier run or before a dedup window forgot the event.
    s.counters.actions_duplicate += 1
    workflow.logger.info("action %s already exists, not starting it again", action_id)
    return True  # a start was attempted: it counts towards the run's limit


# Starting actions from the agent's worker (eagerly) instead of as children. Added with history
# generation g1 live. Deprecate (``workflow.deprecate_patch``) once every agent has continued as
# new on a build that has it (``aiops agents upgrade`` asks each one now); remove the child path
# with the next history generation (g2), when no recorded history starts a child any more.
START_FROM_WORKER = "start-actions-from-worker"


async def _start_from_worker(
    input: ActionInput, summary: str, details: str, now: datetime, launched: set[str]
) -> ActionStarted:
    """Start the action from this worker's own client, eagerly where this process runs the type's
    queue (``activities/action_start.py``): the action's first task runs at once, without the
    child start's round trips. Runs of code before this change start children, and replay so.

    The worker that runs agents must register ``ActionStarter.start_action`` (``build_worker``
    does): the SDK fails a workflow task that calls a local activity its worker lacks."""
    if not workflow.patched(START_FROM_WORKER):
        return ActionStarted(outcome="unavailable", reason="recorded before starts from the worker")
    action = input.action
    if action.id in launched:  # this run started it before: the same event again, after it ended
        return ActionStarted(outcome="duplicate", reason=f"{action.id} was started by this run")
    launched.add(action.id)
    start = ActionStart(
        input=input,
        workflow_id=action.id,
        task_queue=hooks_task_queue(workflow.info().task_queue, input.config.type),
        priority_key=PRIORITY_BY_RISK.get(action.risk_level, 3),
        requested_at=now,
        inbox_summary=inbox_summary(action),
        static_summary=summary,
        static_details=details,
        launched_by=workflow.info().workflow_id,
    )
    try:
        return await workflow.execute_local_activity_method(
            ActionStarter.start_action,
            args=[compact(start)],  # kept by the SDK core for the whole run: without its defaults
            start_to_close_timeout=timedelta(seconds=30),
            # Until the server answers: a transient failure is retried, backing off to 30 s; the
            # activity answers (not raises) what no retry can fix.
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
            ),
        )
    except ActivityError as err:  # cancelled (the agent's run is being cancelled): a child, as before
        workflow.logger.info("action %s starts as a child: %s", action.id, cause_message(err))
        return ActionStarted(outcome="unavailable", reason=cause_message(err))


async def _start_as_child(input: ActionInput, summary: str, details: str, now: datetime) -> ActionStarted:
    """Start the action as the agent's child: the server links the two."""
    action = input.action
    try:
        await workflow.start_child_workflow(
            ActionWorkflow.run,
            input,
            id=action.id,
            # On the agent type's own queue, where only workers that have the type poll: the
            # action's hooks (plan, execute, verify) are scheduled on the queue of the workflow
            # that schedules them, so the worker completing the task starts them at once (eager
            # activity dispatch), a round trip through matching less (docs/scale.md, "Latency").
            task_queue=hooks_task_queue(workflow.info().task_queue, input.config.type),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            priority=action_priority(action.risk_level),
            search_attributes=inbox_attributes(
                action, input.config.type, now, input.decision.required_approvals, inbox_summary(action)
            ),
            static_summary=summary,
            static_details=details,
        )
    except WorkflowAlreadyStartedError:
        return ActionStarted(outcome="duplicate")
    return ActionStarted(outcome="started")
