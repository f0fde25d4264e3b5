"""The action workflow's approval notices: approvers are told, durably, without holding up the wait.

Each (step, channel) is one ``notify_approvers`` activity started as a workflow task, so the
approval wait goes on while a receiver is down; Temporal retries it with backoff for the channel's
``give_up_after_seconds``. Once the wait ends, a pending or escalated notice still retrying is
obsolete ("please approve" after the decision) and is cancelled; the final notice (expired or
resolved) is sent only after those settled, so PagerDuty never sees a resolve overtaken by its
trigger. Every delivery, give-up and cancellation is an audit row, and the workflow completes only
once every notice has settled (see ``settled``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.notify_activities import NOTICE_REFUSED, NotifyActivities
    from aiops.contracts.action import ActionInput, ActionRecord
    from aiops.contracts.activities import ApprovalNotice, AuditStep
    from aiops.contracts.config import NotifyChannel, NotifyStep
    from aiops.contracts.errors import SecretUnavailableError
    from workflows.action.approval_gate import approvals_count
    from workflows.action.audit import ActionAudit
    from workflows.action.details import console_link, notice_step, static_summary
    from workflows.failures import cause_message

NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,  # bounded by the channel's give_up_after_seconds (schedule-to-close)
    non_retryable_error_types=[NOTICE_REFUSED, SecretUnavailableError.__name__],
)
_WAITING = (NotifyStep.PENDING, NotifyStep.ESCALATED)


class ActionNotices:
    def __init__(self, input: ActionInput, audit: ActionAudit) -> None:
        self._input = input
        self._audit = audit
        self._enabled = bool(input.config.approval.notify)
        self._tasks: list[tuple[NotifyStep, asyncio.Task[None]]] = []

    def send(
        self, step: NotifyStep, record: ActionRecord, deadline: datetime | None = None, outcome: str = ""
    ) -> None:
        """Start telling every channel that wants ``step`` (returns at once)."""
        if not self._enabled:
            return
        earlier: list[asyncio.Task[None]] = []
        if step not in _WAITING:
            earlier = [task for s, task in self._tasks if s in _WAITING and not task.done()]
            for task in earlier:
                task.cancel()
        for index, channel in enumerate(self._input.config.approval.notify):
            if step in channel.steps:
                notice = self._notice(step, index, channel, record, deadline, outcome)
                self._tasks.append((step, asyncio.create_task(self._deliver(notice, earlier))))

    def wait_ended(self, record: ActionRecord, expired: bool, note: str) -> None:
        """The approval wait is over: expired, or decided (``note``: rejected or aborted, and why;
        empty: approved)."""
        if not note:
            names = ", ".join(a.approver for a in record.approvals if a.approved)
            note = f"approved by {names}" if names else "approved"
        self.send(NotifyStep.EXPIRED if expired else NotifyStep.RESOLVED, record, outcome=note)

    async def settled(self) -> None:
        """Every notice delivered, given up or cancelled (and its audit row queued).

        A notice task that raised is a bug here, not a delivery problem (those are audited):
        re-raised, it fails the workflow task, which retries visibly instead of losing the row.
        """
        await workflow.wait_condition(lambda: all(task.done() for _, task in self._tasks))
        for _, task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"an approval notice failed: {task.exception()!r}")

    def _notice(
        self,
        step: NotifyStep,
        index: int,
        channel: NotifyChannel,
        r: ActionRecord,
        deadline: datetime | None,
        outcome: str,
    ) -> ApprovalNotice:
        decision, approval = self._input.decision, self._input.config.approval
        action = r.action
        return ApprovalNotice(
            key=f"{action.id}:{step.value}:{index}",
            step=step,
            channel_index=index,
            channel=channel,
            action_id=action.id,
            agent_id=action.agent_id,
            workflow_id=workflow.info().workflow_id,
            risk=action.risk_level,
            summary=static_summary(action),
            description=action.description,
            targets=action.target_resources[:20],
            plan_summary=r.plan.summary if r.plan else "",
            plan_digest=r.plan_digest,
            approvals=approvals_count(r),
            required_approvals=decision.required_approvals,
            allowed_roles=list(decision.allowed_roles),
            deadline=deadline,
            escalation_target=approval.escalation_target,
            approve_command=r.approve_command,
            # Who decides comes from $AIOPS_USER or the approver's key file (see docs/cli.md).
            cli_command=f"aiops approvals approve {action.id} --comment '<why>'",
            outcome=outcome,
            console_link=console_link(approval.console_url, action.id),
        )

    async def _deliver(self, notice: ApprovalNotice, after: list[asyncio.Task[None]]) -> None:
        if after:  # a cancelled attempt in flight finishes first: the final notice comes last
            await workflow.wait_condition(lambda: all(task.done() for task in after))
        channel = notice.channel
        label = f"{channel.type.value} #{notice.channel_index}"
        label += f" ({channel.name})" if channel.name else ""
        detail: dict[str, Any] = {
            "notice": notice.step.value,  # not "step": that is the audit row's own
            "channel": notice.channel_index,
            "channel_type": channel.type.value,
            "channel_name": channel.name,
            "idempotency_key": notice.key,
        }
        try:
            delivery = await workflow.execute_activity_method(
                NotifyActivities.notify_approvers,
                notice,
                summary=notice_step(label, notice.step.value),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(seconds=channel.give_up_after_seconds),
                retry_policy=NOTICE_RETRY,
                # Not-yet-started retries end at once; an attempt in flight (at most the HTTP
                # timeout) finishes, so a notice that did land is audited as delivered.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except (ActivityError, asyncio.CancelledError) as err:
            if is_cancelled_exception(err):
                error = "cancelled: the approval wait ended before it was delivered"
            else:
                error = f"gave up: {cause_message(err)}" if isinstance(err, ActivityError) else str(err)
                workflow.logger.warning("approval notice %s not delivered: %s", notice.key, error)
            self._audit.record(AuditStep.NOTIFICATION, _name(notice), delivered=False, error=error, **detail)
            return
        self._audit.record(
            AuditStep.NOTIFICATION,
            _name(notice),
            delivered=True,
            status_code=delivery.status_code,
            attempts=delivery.attempt,
            **detail,
        )


def _name(notice: ApprovalNotice) -> str:
    return f"notify:{notice.step.value}:{notice.channel_index}"
