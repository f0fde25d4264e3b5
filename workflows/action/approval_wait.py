"""The wait for a quorum: a deadline, one escalation on expiry, otherwise expiry as rejected.

The decisions themselves arrive through ``Approvals`` (signals and the ``decide`` update) and
change the shared record; this component only waits until they add up, or the agent aborts the
action, or time runs out. A timeout never approves an action.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts.action import ActionStatus
    from aiops.contracts.activities import AuditStep, EscalationNotice
    from aiops.contracts.config import ExpiryAction, NotifyStep
    from workflows.action.approval_gate import approvals_count
    from workflows.action.context import ActionContext
    from workflows.action.details import deadline_step, escalation_step
    from workflows.failures import cause_message


class ApprovalWait:
    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx

    async def run(self) -> ActionStatus | None:
        """Wait for the quorum, telling the approvers; return the final status if the wait ends
        without one (None: approved, and the status says so)."""
        ctx, r = self._ctx, self._ctx.record
        final = await self._await_approval()
        ctx.notices.wait_ended(r, final == ActionStatus.EXPIRED, ctx.aborted or r.error or "")
        if final is not None:
            return final
        # Approved and not held goes straight on to executing in this same workflow task,
        # so only the executing status is published to the search attributes.
        ctx.set_status(ActionStatus.APPROVED, f"{approvals_count(r)} approval(s)", publish=r.held)
        return None

    async def _await_approval(self) -> ActionStatus | None:
        ctx, r = self._ctx, self._ctx.record
        decision, approval = ctx.input.decision, ctx.input.config.approval
        ctx.set_status(ActionStatus.PENDING_APPROVAL, decision.reason)
        await ctx.report(ActionStatus.PENDING_APPROVAL)
        timeout = decision.timeout_seconds or approval.rule_for(r.action.risk_level).timeout_seconds
        escalates = approval.on_expiry == ExpiryAction.ESCALATE
        then = f"then escalates to {approval.escalation_target}" if escalates else "then expires"
        ctx.notices.send(NotifyStep.PENDING, r, workflow.now() + timedelta(seconds=timeout))
        if await self._wait_for_decision(timeout, then):
            return ActionStatus.REJECTED if ctx.rejected or ctx.aborted else None
        if approval.on_expiry == ExpiryAction.ESCALATE:
            extension = await self._escalate(default_extension=timeout)
            if await self._wait_for_decision(extension, "escalated; then expires"):
                return ActionStatus.REJECTED if ctx.rejected or ctx.aborted else None
        r.error = "approval expired without a decision; a timeout never approves an action"
        return ActionStatus.EXPIRED

    async def _escalate(self, default_extension: float) -> float:
        """Tell the escalation target (a failed notice does not end the wait); return how much
        longer the wait goes on."""
        ctx, r = self._ctx, self._ctx.record
        decision, approval = ctx.input.decision, ctx.input.config.approval
        r.escalated = True
        extension = approval.escalation_extension_seconds or default_extension
        try:
            await workflow.execute_activity_method(
                AgentActivities.notify_escalation,
                EscalationNotice(
                    action_id=r.action.id,
                    agent_id=r.action.agent_id,
                    target=approval.escalation_target,
                    message=(
                        f"{r.action.risk_level.value} risk action waits for approval "
                        f"({approvals_count(r)}/{decision.required_approvals}): "
                        f"{r.action.description}. Approve with: {r.approve_command}"
                    ),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary=escalation_step(approval.escalation_target),
            )
        except ActivityError as err:  # a failed notification must not end the wait
            r.escalation_error = f"escalation to {approval.escalation_target} failed: {cause_message(err)}"
            workflow.logger.warning("%s", r.escalation_error)
        ctx.audit.record(
            AuditStep.ESCALATION,
            "escalation",
            target=approval.escalation_target,
            error=r.escalation_error,
            extension_seconds=extension,
        )
        ctx.set_status(ActionStatus.PENDING_APPROVAL, f"escalated to {approval.escalation_target}")
        ctx.notices.send(NotifyStep.ESCALATED, r, workflow.now() + timedelta(seconds=extension))
        return extension

    async def _wait_for_decision(self, seconds: float, then: str) -> bool:
        deadline = workflow.now() + timedelta(seconds=seconds)
        self._ctx.record.approval_deadline = deadline
        self._ctx.refresh_details()
        try:
            await workflow.wait_condition(
                self._decided,
                timeout=timedelta(seconds=seconds),
                timeout_summary=deadline_step(deadline, then),
            )
            return True
        except TimeoutError:
            return False

    def _decided(self) -> bool:
        ctx = self._ctx
        return (
            ctx.rejected
            or ctx.aborted is not None
            or approvals_count(ctx.record) >= ctx.input.decision.required_approvals
        )
