"""One action run's shared state and services, and the one way its status changes.

``ActionWorkflow``'s components (approvals, the approval wait, holds, execution) each get this
context instead of reaching back into the workflow: the action's input, its record (the ``status``
query's answer and the result), the flags the paths share (rejected, aborted), the audit trail and
the approval notices. Every status change goes through ``ActionContext.set_status``: it checks the
lifecycle's transition table, counts and publishes; ``finish`` ends the run the same way on every
path.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.action import ActionInput, ActionRecord, ActionStatus, StatusChange
    from aiops.contracts.activities import AuditStep
    from workflows import metrics
    from workflows.action.audit import ActionAudit
    from workflows.action.notices import ActionNotices
    from workflows.action.publishing import (
        publish_approvals,
        publish_status,
        report_to_agent,
        show_details,
    )
    from workflows.action_lifecycle import check_transition


class ActionContext:
    def __init__(self, input: ActionInput) -> None:
        self.input = input
        self.record = ActionRecord(
            action=input.action,
            event=input.event,
            config_version=input.config.version,
            decision=input.decision,
            held=input.held,
            hold_epoch=input.hold_epoch,
        )
        self.rejected = False  # a person rejected it (the reason is in record.error)
        self.aborted: str | None = None  # the agent stopped without draining, confirmed: why
        self.audit = ActionAudit(lambda: self.record)
        self.audit.sink_available(input.audit_log)
        self.notices = ActionNotices(input, self.audit)
        # ``executing`` may be published a task after execute is dispatched (PUBLISH_AFTER_DISPATCH).
        self.publish_after_dispatch = False
        self._upserted_in: int | None = None  # the task (by history length) that last upserted

    @property
    def agent_type(self) -> str:
        return self.input.config.type

    def set_status(self, status: ActionStatus, note: str = "", publish: bool = True) -> None:
        """The one status setter: every change is checked against the lifecycle
        (``workflows/action_lifecycle.py``), kept in the record's history, counted, and (unless
        ``publish`` is False) published to the search attributes and the current details."""
        r = self.record
        if r.history and r.status == status and note in ("", r.history[-1].note):
            return  # already there
        # The first status has no predecessor; every later change must be in the lifecycle's table.
        check_transition(r.status if r.history else None, status)
        if r.status == ActionStatus.PENDING_APPROVAL and status != ActionStatus.PENDING_APPROVAL:
            pending_since = next(h.at for h in r.history if h.status == ActionStatus.PENDING_APPROVAL)
            waited = workflow.now() - pending_since
            metrics.observe_approval_wait(self.agent_type, r.action.risk_level.value, waited)
        r.status = status
        r.history.append(StatusChange(status=status, at=workflow.now(), note=note))
        if not status.is_final:  # final statuses are counted once, by finish
            metrics.count_action_status(self.agent_type, status.value)
        if not publish:
            return
        self.publish()

    def publish(self) -> None:
        """The status and the inbox's columns to the search attributes (where they differ from
        what the workflow has), and the current details."""
        if publish_status(self.record, self.input):
            self._upserted()
        self.refresh_details()

    def publish_approvals(self) -> None:
        """The approvals-so-far column alone, after an approval that did not change the status."""
        publish_approvals(self.record)
        self._upserted()

    def decide_publish_after_dispatch(self, patch_id: str) -> None:
        """Whether this run publishes ``executing`` a task after execute is dispatched (the patch
        ``patch_id``, workflows/action/execution.py). The SDK records a new patch with an upsert
        of its own (``TemporalChangeVersion``) in this task, so this task counts as upserting."""
        self.publish_after_dispatch = workflow.patched(patch_id)
        if self.publish_after_dispatch:
            self._upserted()

    def upserted_in_this_task(self) -> bool:
        """Whether this workflow task already upserts search attributes: one more upsert in it
        then costs nothing (bench/upsert_probe.py), so there is nothing to defer."""
        return self._upserted_in == workflow.info().get_current_history_length()

    def _upserted(self) -> None:
        self._upserted_in = workflow.info().get_current_history_length()

    def refresh_details(self) -> None:
        show_details(self.record, self.input)

    async def report(self, status: ActionStatus) -> None:
        """Tell the agent where this action is (it waits for the final report)."""
        await report_to_agent(self.record, self.input, status)

    async def finish(self, status: ActionStatus, note: str) -> ActionRecord:
        """End the run in ``status``: counted, audited, reported to the agent, and returned only
        once its approval notices settled and its audit rows landed."""
        if status in (ActionStatus.FAILED, ActionStatus.DENIED, ActionStatus.REJECTED) and note:
            self.record.error = note
        self.set_status(status, note)
        metrics.count_action_status(self.agent_type, status.value)
        took = workflow.now() - self.record.history[0].at
        metrics.observe_action_duration(self.agent_type, status.value, took)
        self.audit.record(AuditStep.ACTION_FINISHED, "finished", status=status.value, note=note)
        await self.report(status)
        await self.notices.settled()  # approval notices delivered, given up or cancelled
        await self.audit.drained()  # the run ends only once its audit rows have landed
        return self.record
