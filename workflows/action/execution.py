"""Running the agent's hooks for an action: plan (the dry run), execute, verify, roll back.

Each hook runs on the agent type's own task queue (only its workers poll it), heartbeating, so a
crashed worker's attempt is retried elsewhere in seconds. Execution retries with the agent's retry
policy and leaves one audit row per attempt; a failed verification is compensated by the agent's
rollback. Every outcome ends the run through ``ActionContext.finish``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts import agent as agent_contract
    from aiops.contracts.action import ActionRecord, ActionStatus
    from aiops.contracts.activities import (
        NON_RETRYABLE_AGENT_ERRORS,
        ActionCall,
        AuditStep,
        ExecutionOutcome,
        VerifyCall,
    )
    from aiops.contracts.models import Plan
    from aiops.contracts.policy import Outcome
    from workflows.action.audit import attempts_of
    from workflows.action.context import ActionContext
    from workflows.action.details import execute_step, plan_step, rollback_step, verify_step
    from workflows.failures import cause_message

# A worker heartbeats while a hook runs: a crashed worker's attempt is retried elsewhere in seconds.
DEFAULT_HEARTBEAT_SECONDS = 10.0

HOOK_RETRY = RetryPolicy(
    maximum_attempts=5,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)

# An action that started showing ``proposed`` publishes ``executing`` a task after execute is
# dispatched, on ``execute_dispatched``'s completion, where the task that dispatches it has nothing
# else to upsert (see ``execute_and_verify``). Decided in the action's first task, which for an
# action that plans or waits for approval upserts its status anyway, so the patch's own upsert
# (the SDK's TemporalChangeVersion) costs nothing on the way to execute.
# Deprecate (workflow.deprecate_patch) once no action started before it can still be open (the
# longest approval wait, escalation included); remove with the next history generation (g2_),
# docs/deploy.md "A patch's lifecycle".
PUBLISH_AFTER_DISPATCH = "publish-executing-after-dispatch"
# How long the inbox may go on showing the approval once execute is dispatched, at the most: the
# no-op activity ``execute_dispatched`` runs at once on the worker that runs execute.
DISPATCHED_TIMEOUT = timedelta(seconds=10)

A = TypeVar("A")
R = TypeVar("R")


class Execution:
    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx

    async def plan(self) -> Plan | None:
        """The dry run. For an action that executes at once (auto-approved) whose agent decides
        locally: in a local activity on this worker first, a round trip less before executing.
        Otherwise, or when it cannot be done here, by the ``plan_action`` activity on the type's
        queue with its retries. An action that waits for a person plans by activity: the wait
        dwarfs the round trip, and the Web UI's timeline shows an activity's summary ("plan: dry
        run of ...") to the approver, where a local activity is only a marker."""
        r, config = self._ctx.record, self._ctx.input.config
        call = ActionCall(config=config, action=r.action)
        at_once = self._ctx.input.decision.outcome == Outcome.AUTO_EXECUTE
        if config.runtime.local_decisions and at_once:
            try:
                here = await workflow.execute_local_activity_method(
                    AgentActivities.plan_action_here,
                    call,
                    summary=plan_step(r.action),
                    start_to_close_timeout=timedelta(seconds=config.retry.start_to_close_timeout_seconds),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                if here.planned:
                    return here.plan
                workflow.logger.info("action %s plans the usual way: %s", r.action.id, here.problem)
            except ActivityError as err:
                workflow.logger.info("action %s plans the usual way: %s", r.action.id, cause_message(err))
        return await self._hook(AgentActivities.plan_action, call, plan_step(r.action))

    async def execute_and_verify(self) -> ActionRecord:
        """Execute with the agent's retries, then verify, rolling back what does not verify."""
        ctx, r, config = self._ctx, self._ctx.record, self._ctx.input.config
        retry = config.retry
        # Where this task upserts nothing else, ``executing`` is published by the next one.
        later = ctx.publish_after_dispatch and not ctx.upserted_in_this_task()
        ctx.set_status(ActionStatus.EXECUTING, publish=not later)
        try:
            execute = workflow.start_activity_method(
                AgentActivities.execute_action,
                ActionCall(config=config, action=r.action, plan=r.plan),
                task_queue=self._hooks_queue(),
                summary=execute_step(r.action, retry.maximum_attempts),
                start_to_close_timeout=timedelta(seconds=retry.start_to_close_timeout_seconds),
                heartbeat_timeout=self._heartbeat_timeout(),
                retry_policy=RetryPolicy(
                    maximum_attempts=retry.maximum_attempts,
                    initial_interval=timedelta(seconds=retry.initial_interval_seconds),
                    backoff_coefficient=retry.backoff_coefficient,
                    maximum_interval=timedelta(seconds=retry.maximum_interval_seconds),
                    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
                ),
            )
            if later:
                await self._publish_once_dispatched(execute)
            outcome: ExecutionOutcome = await execute
        except ActivityError as err:
            ctx.audit.execution(attempts_of(err), f"execution failed: {cause_message(err)}")
            return await ctx.finish(ActionStatus.FAILED, f"execution failed: {cause_message(err)}")
        r.result = outcome.result
        ctx.audit.execution(outcome.attempts, None)
        if not r.result.success:
            return await ctx.finish(
                ActionStatus.FAILED, r.result.error or r.result.message or "the agent reported failure"
            )
        # Verifying (the agent's verify hook, when it has one) before the action is called succeeded.
        ctx.set_status(ActionStatus.VERIFYING, r.result.message)
        try:
            r.verified = await self._hook(
                AgentActivities.verify_action,
                VerifyCall(config=config, action=r.action, result=r.result),
                verify_step(r.action),
            )
        except ActivityError as err:
            r.error = f"verification could not run: {cause_message(err)}"
            r.verified = False
        if r.verified is None:  # the agent has no verify hook
            return await ctx.finish(ActionStatus.SUCCEEDED, r.result.message)
        ctx.audit.record(AuditStep.VERIFICATION, "verification", verified=r.verified, error=r.error)
        if r.verified:
            return await ctx.finish(ActionStatus.VERIFIED, r.result.message)
        return await self._roll_back()

    async def _publish_once_dispatched(self, execute: workflow.ActivityHandle[ExecutionOutcome]) -> None:
        """Publish ``executing`` in the task after the one that dispatched execute: an upsert in
        that task made the server answer it, and so start execute, about 3 ms later
        (bench/upsert_probe.py). ``execute_dispatched`` does nothing, on execute's queue, so the
        server hands it to this worker with execute, and its completion is that next task.

        It is awaited even when execute ends first, so it never lands while the action completes:
        the action goes on to verify once it ran, which is as soon as execute's own dispatch
        allows (``DISPATCHED_TIMEOUT`` at the most). If it cannot run (a worker without it), the
        status is published all the same; if execute has ended, the status after it is published
        instead. A cancel of the action meant for execute, which arrives while this waits, is
        passed on to execute."""
        try:
            await workflow.execute_activity_method(
                AgentActivities.execute_dispatched,
                task_queue=self._hooks_queue(),
                summary="executing: shown in the approval inbox",
                schedule_to_close_timeout=DISPATCHED_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                execute.cancel()  # as it would have been, had execute been awaited
                return
            workflow.logger.info("execute_dispatched did not run: %s", cause_message(err))
        if not execute.done():
            self._ctx.publish()

    async def _roll_back(self) -> ActionRecord:
        """Verification failed: compensate with the agent's rollback hook."""
        ctx, r, config = self._ctx, self._ctx.record, self._ctx.input.config
        try:
            r.rollback_result = await self._hook(
                AgentActivities.rollback_action,
                ActionCall(config=config, action=r.action, plan=r.plan),
                rollback_step(r.action),
            )
        except ActivityError as err:
            ctx.audit.record(AuditStep.ROLLBACK, "rollback", success=False, error=cause_message(err))
            return await ctx.finish(
                ActionStatus.FAILED, f"verification failed and rollback failed: {cause_message(err)}"
            )
        ctx.audit.record(
            AuditStep.ROLLBACK,
            "rollback",
            success=r.rollback_result.success if r.rollback_result else None,
            message=r.rollback_result.message if r.rollback_result else "the agent has no rollback",
        )
        if r.rollback_result is None:
            return await ctx.finish(ActionStatus.FAILED, "verification failed; the agent has no rollback")
        if not r.rollback_result.success:
            return await ctx.finish(
                ActionStatus.FAILED, f"verification failed; rollback failed: {r.rollback_result.message}"
            )
        return await ctx.finish(
            ActionStatus.ROLLED_BACK, f"verification failed; rolled back: {r.rollback_result.message}"
        )

    async def _hook(self, method: Callable[[Any, A], Awaitable[R]], arg: A, summary: str) -> R:
        """Run an agent hook; ``summary`` is what the Web UI's timeline shows for it (a sentence,
        not the activity's name)."""
        return await workflow.execute_activity_method(
            method,
            arg,
            summary=summary,
            task_queue=self._hooks_queue(),
            start_to_close_timeout=timedelta(
                seconds=self._ctx.input.config.retry.start_to_close_timeout_seconds
            ),
            heartbeat_timeout=self._heartbeat_timeout(),
            retry_policy=HOOK_RETRY,
        )

    def _hooks_queue(self) -> str:
        """Where this agent type's code runs: its own task queue, which only its workers poll.

        An action runs on that queue itself (``workflows/action_launch.py``), so its hooks go to
        its own queue and are dispatched eagerly to the worker that schedules them; an action
        started on the shared queue (before the type queues ran actions) sends them there."""
        own = workflow.info().task_queue
        if own.endswith(f".{self._ctx.agent_type}"):
            return own
        return agent_contract.hooks_task_queue(own, self._ctx.agent_type)

    def _heartbeat_timeout(self) -> timedelta:
        """The configured heartbeat timeout, else a default of seconds: the worker heartbeats while
        a hook runs, so a crashed worker's attempt is retried elsewhere in seconds, not after the
        whole start-to-close timeout."""
        configured = self._ctx.input.config.retry.heartbeat_timeout_seconds
        return timedelta(seconds=configured if configured is not None else DEFAULT_HEARTBEAT_SECONDS)
