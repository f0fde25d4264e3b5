"""ActionWorkflow: one proposed action, from the policy's decision to its verified end.

The agent workflow decides the policy and starts this workflow with it.
Here the action is planned (dry run), waits for the approvals the decision
demands (signals and the ``decide`` update share one check), escalates once
on expiry and otherwise expires as rejected, then executes with the agent's
retry policy, verifies, and compensates with rollback when verification fails.
Every change is visible in ``status``, the Web UI details and the search
attributes that make up the approval inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.agent_activities import AgentActivities
    from aiops.contracts import agent as agent_contract
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.action import (
        ABORT,
        APPROVAL_REFUSED,
        APPROVE,
        DECIDE,
        HOLD,
        MAX_REFUSALS_KEPT,
        REJECT,
        RELEASE,
        STATUS,
        WORKFLOW_TYPE,
        AbortRequest,
        ActionInput,
        ActionOutcome,
        ActionRecord,
        ActionStatus,
        ApprovalRecord,
        ApprovalRequest,
        DecisionRequest,
        HoldRequest,
        RefusedApproval,
        StatusChange,
        plan_digest,
    )
    from aiops.contracts.activities import (
        NON_RETRYABLE_AGENT_ERRORS,
        ActionCall,
        AuditStep,
        EscalationNotice,
        ExecutionOutcome,
        VerifyCall,
    )
    from aiops.contracts.errors import describe_validation_error
    from aiops.contracts.models import ExpiryAction, NotifyStep, Plan
    from aiops.contracts.policy import Outcome
    from workflows import metrics
    from workflows.action_audit import ActionAudit, attempts_of
    from workflows.action_details import (
        AGENT_MESSAGES,
        PEOPLE_MESSAGES,
        approve_command,
        deadline_step,
        details_markdown,
        escalation_step,
        execute_step,
        plan_step,
        rollback_step,
        verify_step,
    )
    from workflows.action_lifecycle import check_transition
    from workflows.action_notices import ActionNotices
    from workflows.approval_gate import approvals_count, check_decision
    from workflows.approval_token import Verified
    from workflows.failures import cause_message

# A worker heartbeats while a hook runs: a crashed worker's attempt is retried elsewhere in seconds.
DEFAULT_HEARTBEAT_SECONDS = 10.0

HOOK_RETRY = RetryPolicy(
    maximum_attempts=5,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)


A = TypeVar("A")
R = TypeVar("R")


# Pinned under Worker Versioning (the versioned worker's default, aiops/runtime/worker_build.py):
# an action ends on the build that started it, so a new build never replays an action's history
# (docs/deploy.md, "Versioning workflow code").
@workflow.defn(name=WORKFLOW_TYPE)
class ActionWorkflow:
    @workflow.init
    def __init__(self, input: ActionInput) -> None:
        self._input = input
        self._record = ActionRecord(
            action=input.action,
            event=input.event,
            config_version=input.config.version,
            decision=input.decision,
            held=input.held,
            hold_epoch=input.hold_epoch,
        )
        self._rejected = False
        self._aborted: str | None = None
        self._audit = ActionAudit(lambda: self._record)
        self._audit.sink_available(input.audit_log)
        self._notices = ActionNotices(input, self._audit)
        # A hold, release or abort signal is only a prompt: it is confirmed with the agent first.
        self._claims: list[tuple[str, int | None]] = []  # (hold|release|abort, epoch) to confirm
        self._claims_seen = 0

    @workflow.run
    async def run(self, input: ActionInput) -> ActionRecord:
        confirmer = asyncio.create_task(self._confirm_with_agent())
        try:
            return await self._run(input)
        finally:
            confirmer.cancel()

    async def _run(self, input: ActionInput) -> ActionRecord:
        r = self._record
        self._record.approve_command = approve_command(workflow.info().workflow_id)
        self._set_status(ActionStatus.PROPOSED, input.decision.reason)
        self._audit.decision(input)
        if input.decision.outcome == Outcome.DENY:
            return await self._finish(ActionStatus.DENIED, input.decision.reason)

        if input.has_plan:  # an agent type without a plan hook has no dry run to wait for
            self._set_status(ActionStatus.PLANNING)
            try:
                r.plan = await self._plan()
            except ActivityError as err:  # no dry run, no execution: never act blind
                return await self._finish(ActionStatus.FAILED, f"plan failed: {cause_message(err)}")
        r.plan_digest = plan_digest(r.plan)

        if input.decision.outcome == Outcome.REQUIRE_APPROVAL:
            final = await self._await_approval()
            self._notices.wait_ended(r, final == ActionStatus.EXPIRED, self._aborted or r.error or "")
            if final is not None:
                return await self._finish(final, self._aborted or r.error or "")
            # Approved and not held goes straight on to executing in this same workflow task,
            # so only the executing status is published to the search attributes.
            self._set_status(
                ActionStatus.APPROVED, f"{approvals_count(r)} approval(s)", publish=self._record.held
            )

        await workflow.wait_condition(lambda: not self._record.held or self._aborted is not None)
        if self._aborted is not None:
            return await self._finish(ActionStatus.REJECTED, self._aborted)
        return await self._execute_and_verify()

    # ----- approval ------------------------------------------------------------

    async def _await_approval(self) -> ActionStatus | None:
        """Wait for the quorum; return the final status if it ends without one."""
        r, decision, approval = self._record, self._input.decision, self._input.config.approval
        self._set_status(ActionStatus.PENDING_APPROVAL, decision.reason)
        await self._report_and_wait(ActionStatus.PENDING_APPROVAL)
        timeout = decision.timeout_seconds or approval.rule_for(r.action.risk_level).timeout_seconds
        escalates = approval.on_expiry == ExpiryAction.ESCALATE
        then = f"then escalates to {approval.escalation_target}" if escalates else "then expires"
        self._notices.send(NotifyStep.PENDING, r, workflow.now() + timedelta(seconds=timeout))
        if await self._wait_for_decision(timeout, then):
            return ActionStatus.REJECTED if self._rejected or self._aborted else None
        if approval.on_expiry == ExpiryAction.ESCALATE:
            r.escalated = True
            extension = approval.escalation_extension_seconds or timeout
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
                r.escalation_error = (
                    f"escalation to {approval.escalation_target} failed: {cause_message(err)}"
                )
                workflow.logger.warning("%s", r.escalation_error)
            self._audit.record(
                AuditStep.ESCALATION,
                "escalation",
                target=approval.escalation_target,
                error=r.escalation_error,
                extension_seconds=extension,
            )
            self._set_status(ActionStatus.PENDING_APPROVAL, f"escalated to {approval.escalation_target}")
            self._notices.send(NotifyStep.ESCALATED, r, workflow.now() + timedelta(seconds=extension))
            if await self._wait_for_decision(extension, "escalated; then expires"):
                return ActionStatus.REJECTED if self._rejected or self._aborted else None
        r.error = "approval expired without a decision; a timeout never approves an action"
        return ActionStatus.EXPIRED

    async def _wait_for_decision(self, seconds: float, then: str) -> bool:
        deadline = workflow.now() + timedelta(seconds=seconds)
        self._record.approval_deadline = deadline
        self._refresh_details()
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
        return (
            self._rejected
            or self._aborted is not None
            or approvals_count(self._record) >= self._input.decision.required_approvals
        )

    # Every signal takes an optional payload: a signal sent with no input (or the wrong
    # one) from the Web UI must be refused and recorded, never fail the workflow task.

    @workflow.signal(name=APPROVE, description=PEOPLE_MESSAGES[APPROVE])
    def approve(self, payload: Any = None) -> None:
        """Approve (an ``ApprovalRequest`` as JSON); a refusal is recorded and audited."""
        self._take_signal(payload, approve=True)

    @workflow.signal(name=REJECT, description=PEOPLE_MESSAGES[REJECT])
    def reject(self, payload: Any = None) -> None:
        """Reject (an ``ApprovalRequest`` as JSON); a refusal is recorded and audited."""
        self._take_signal(payload, approve=False)

    @workflow.update(name=DECIDE, description=PEOPLE_MESSAGES[DECIDE])
    def decide(self, request: DecisionRequest) -> ActionRecord:
        """Approve or reject and learn the outcome at once: a refusal fails the update with the
        reason, after this workflow has recorded and audited it."""
        reason, claims = self._check(request, request.approve)
        if reason is not None:
            self._refuse(request.approver, request.approve, request.comment, "update", reason)
            # details: the refusal is in this workflow's audit already
            raise ApplicationError(reason, {"audited": True}, type=APPROVAL_REFUSED, non_retryable=True)
        self._apply(request, approve=request.approve, channel="update", claims=claims)
        return self._record

    @decide.validator
    def _validate_decide(self, request: DecisionRequest) -> None:
        # Only what is no decision at all is refused here, before history; who may decide is
        # settled in the handler, where the refusal is recorded.
        reason = self._not_pending()
        if reason is not None:
            raise ApplicationError(reason, type=APPROVAL_REFUSED, non_retryable=True)

    def _not_pending(self) -> str | None:
        r = self._record
        if r.status != ActionStatus.PENDING_APPROVAL:
            return f"action {r.action.id} is no longer pending approval (it is {r.status.value})"
        return None

    def _check(self, request: ApprovalRequest, approve: bool) -> tuple[str | None, Verified | None]:
        """Why ``request`` may not decide (None: it may), and who the verified token proves."""
        info = workflow.info()
        return check_decision(
            self._record, self._input.config, request, approve, info.workflow_id, workflow.now()
        )

    def _take_signal(self, payload: Any, approve: bool) -> None:
        try:
            request = ApprovalRequest.model_validate(payload if payload is not None else {})
        except ValidationError as err:
            reason = describe_validation_error(err)
            self._refuse(str(payload)[:80], approve, "", "signal", f'{reason} (send {{"approver": ...}})')
            return
        refusal, claims = self._check(request, approve)
        if refusal is not None:
            self._refuse(request.approver, approve, request.comment, "signal", refusal)
            return
        self._apply(request, approve=approve, channel="signal", claims=claims)

    def _apply(
        self, request: ApprovalRequest, approve: bool, channel: str, claims: Verified | None = None
    ) -> None:
        self._record.approvals.append(
            ApprovalRecord(
                approver=request.approver,
                approved=approve,
                comment=request.comment,
                at=workflow.now(),
                channel=channel,
                plan_digest=self._record.plan_digest,
                authenticated=claims is not None,
                token_id=claims.claims.jti if claims is not None else None,
                issuer=claims.issuer if claims is not None else None,
            )
        )
        detail: dict[str, Any] = {"authenticated": claims is not None}
        if claims is not None:
            detail["token_id"] = claims.claims.jti
            if claims.issuer is not None:
                detail["issuer"] = claims.issuer
        self._audit.record(
            AuditStep.APPROVAL,
            f"approval:{len(self._record.approvals)}",
            actor=request.approver,
            approved=approve,
            comment=request.comment,
            channel=channel,
            plan_digest=self._record.plan_digest,
            **detail,
        )
        if not approve:
            self._rejected = True
            self._record.error = f"rejected by {request.approver}: {request.comment}".rstrip(": ")
        else:
            workflow.upsert_search_attributes([sa.APPROVALS.value_set(approvals_count(self._record))])
        self._refresh_details()

    def _refuse(self, approver: str, approve: bool, comment: str, channel: str, reason: str) -> None:
        self._record.refused_total += 1
        self._record.refused.append(
            RefusedApproval(
                approver=approver,
                approved=approve,
                comment=comment,
                at=workflow.now(),
                channel=channel,
                reason=reason,
            )
        )
        del self._record.refused[:-MAX_REFUSALS_KEPT]
        self._audit.record(
            AuditStep.APPROVAL_REFUSED,
            f"refused:{self._record.refused_total}",
            actor=approver,
            approved=approve,
            comment=comment,
            channel=channel,
            reason=reason,
        )
        workflow.logger.warning("refused %s from %s: %s", channel, approver, reason)
        self._refresh_details()

    # ----- hold while the agent is paused -------------------------------------

    @workflow.signal(name=HOLD, description=AGENT_MESSAGES[HOLD])
    def hold(self, request: HoldRequest | None = None) -> None:
        """The agent is paused: do not start executing until released (confirmed with the agent)."""
        self._claims.append(("hold", (request or HoldRequest()).epoch))

    @workflow.signal(name=RELEASE, description=AGENT_MESSAGES[RELEASE])
    def release(self, request: HoldRequest | None = None) -> None:
        """The agent resumed: executing may start (confirmed with the agent)."""
        self._claims.append(("release", (request or HoldRequest()).epoch))

    @workflow.signal(name=ABORT, description=AGENT_MESSAGES[ABORT])
    def abort(self, request: AbortRequest | None = None) -> None:
        """The agent stopped without draining: end this action unless it is already executing
        (confirmed with the agent)."""
        self._claims.append(("abort", None))

    async def _confirm_with_agent(self) -> None:
        """Apply what the agent's own state says whenever a hold, release or abort arrives.

        Anyone who can reach Temporal can send these signals, so their content is only a
        prompt: the agent's ``hold_state`` (changed only by verified commands) decides, and a
        claim it does not confirm is recorded and audited as refused. Runs beside the main
        path for the action's whole life.
        """
        parent = workflow.info().parent
        while True:
            await workflow.wait_condition(lambda: bool(self._claims))
            claims, self._claims = self._claims, []
            if parent is None:
                for verb, _ in claims:
                    self._refuse_claim(
                        verb, "this action has no agent; only an agent holds, releases or aborts"
                    )
                continue
            try:
                view = await workflow.execute_local_activity_method(
                    AgentActivities.agent_hold_state,
                    parent.workflow_id,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
                )
            except ActivityError as err:
                for verb, _ in claims:
                    self._refuse_claim(
                        verb, f"could not confirm with agent {parent.workflow_id}: {cause_message(err)}"
                    )
                continue
            if view is None:
                for verb, _ in claims:
                    self._refuse_claim(verb, f"agent {parent.workflow_id} no longer exists")
                continue
            if view.abort_reason is not None and self._aborted is None:
                self._aborted = f"aborted: {view.abort_reason}"
            if view.hold_epoch > self._record.hold_epoch:
                self._record.hold_epoch = view.hold_epoch
                self._record.held = view.paused
                self._refresh_details()
            for verb, _ in claims:
                if verb == "abort" and view.abort_reason is None:
                    self._refuse_claim(verb, f"agent {parent.workflow_id} is not stopping without draining")
                elif verb == "hold" and not view.paused:
                    self._refuse_claim(verb, f"agent {parent.workflow_id} is not paused")
                elif verb == "release" and view.paused:
                    self._refuse_claim(verb, f"agent {parent.workflow_id} is paused")

    def _refuse_claim(self, verb: str, reason: str) -> None:
        self._claims_seen += 1
        self._audit.record(
            AuditStep.COMMAND_REFUSED, f"{verb}-refused:{self._claims_seen}", verb=verb, reason=reason
        )
        workflow.logger.warning("%s not confirmed: %s", verb, reason)

    @workflow.query(name=STATUS, description=PEOPLE_MESSAGES[STATUS])
    def status(self) -> ActionRecord:
        return self._record

    # ----- execution -----------------------------------------------------------

    async def _execute_and_verify(self) -> ActionRecord:
        r, config = self._record, self._input.config
        retry = config.retry
        self._set_status(ActionStatus.EXECUTING)
        try:
            outcome: ExecutionOutcome = await workflow.execute_activity_method(
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
        except ActivityError as err:
            self._audit.execution(attempts_of(err), f"execution failed: {cause_message(err)}")
            return await self._finish(ActionStatus.FAILED, f"execution failed: {cause_message(err)}")
        r.result = outcome.result
        self._audit.execution(outcome.attempts, None)
        if not r.result.success:
            return await self._finish(
                ActionStatus.FAILED, r.result.error or r.result.message or "the agent reported failure"
            )
        # Verifying (the agent's verify hook, when it has one) before the action is called succeeded.
        self._set_status(ActionStatus.VERIFYING, r.result.message)
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
            return await self._finish(ActionStatus.SUCCEEDED, r.result.message)
        self._audit.record(AuditStep.VERIFICATION, "verification", verified=r.verified, error=r.error)
        if r.verified:
            return await self._finish(ActionStatus.VERIFIED, r.result.message)
        try:
            r.rollback_result = await self._hook(
                AgentActivities.rollback_action,
                ActionCall(config=config, action=r.action, plan=r.plan),
                rollback_step(r.action),
            )
        except ActivityError as err:
            self._audit.record(AuditStep.ROLLBACK, "rollback", success=False, error=cause_message(err))
            return await self._finish(
                ActionStatus.FAILED, f"verification failed and rollback failed: {cause_message(err)}"
            )
        self._audit.record(
            AuditStep.ROLLBACK,
            "rollback",
            success=r.rollback_result.success if r.rollback_result else None,
            message=r.rollback_result.message if r.rollback_result else "the agent has no rollback",
        )
        if r.rollback_result is None:
            return await self._finish(ActionStatus.FAILED, "verification failed; the agent has no rollback")
        if not r.rollback_result.success:
            return await self._finish(
                ActionStatus.FAILED, f"verification failed; rollback failed: {r.rollback_result.message}"
            )
        return await self._finish(
            ActionStatus.ROLLED_BACK, f"verification failed; rolled back: {r.rollback_result.message}"
        )

    async def _plan(self) -> Plan | None:
        """The dry run. For an action that executes at once (auto-approved) whose agent decides
        locally: in a local activity on this worker first, a round trip less before executing.
        Otherwise, or when it cannot be done here, by the ``plan_action`` activity on the type's
        queue with its retries. An action that waits for a person plans by activity: the wait
        dwarfs the round trip, and the Web UI's timeline shows an activity's summary ("plan: dry
        run of ...") to the approver, where a local activity is only a marker."""
        r, config = self._record, self._input.config
        call = ActionCall(config=config, action=r.action)
        at_once = self._input.decision.outcome == Outcome.AUTO_EXECUTE
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

    async def _hook(self, method: Callable[[Any, A], Awaitable[R]], arg: A, summary: str) -> R:
        """Run an agent hook; ``summary`` is what the Web UI's timeline shows for it (a sentence,
        not the activity's name)."""
        return await workflow.execute_activity_method(
            method,
            arg,
            summary=summary,
            task_queue=self._hooks_queue(),
            start_to_close_timeout=timedelta(seconds=self._input.config.retry.start_to_close_timeout_seconds),
            heartbeat_timeout=self._heartbeat_timeout(),
            retry_policy=HOOK_RETRY,
        )

    def _hooks_queue(self) -> str:
        """Where this agent type's code runs: its own task queue, which only its workers poll."""
        return agent_contract.hooks_task_queue(workflow.info().task_queue, self._input.config.type)

    def _heartbeat_timeout(self) -> timedelta:
        """The configured heartbeat timeout, else a default of seconds: the worker heartbeats while
        a hook runs, so a crashed worker's attempt is retried elsewhere in seconds, not after the
        whole start-to-close timeout."""
        configured = self._input.config.retry.heartbeat_timeout_seconds
        return timedelta(seconds=configured if configured is not None else DEFAULT_HEARTBEAT_SECONDS)

    async def _finish(self, status: ActionStatus, note: str) -> ActionRecord:
        if status in (ActionStatus.FAILED, ActionStatus.DENIED, ActionStatus.REJECTED) and note:
            self._record.error = note
        self._set_status(status, note)
        metrics.count_action_status(self._input.config.type, status.value)
        took = workflow.now() - self._record.history[0].at
        metrics.observe_action_duration(self._input.config.type, status.value, took)
        self._audit.record(AuditStep.ACTION_FINISHED, "finished", status=status.value, note=note)
        await self._report_and_wait(status)
        await self._notices.settled()  # approval notices delivered, given up or cancelled
        await self._audit.drained()  # the run ends only once its audit rows have landed
        return self._record

    # ----- publishing ----------------------------------------------------------

    def _set_status(self, status: ActionStatus, note: str = "", publish: bool = True) -> None:
        r = self._record
        if r.history and r.status == status and note in ("", r.history[-1].note):
            return  # already there
        # The first status has no predecessor; every later change must be in the lifecycle's table.
        check_transition(r.status if r.history else None, status)
        if r.status == ActionStatus.PENDING_APPROVAL and status != ActionStatus.PENDING_APPROVAL:
            pending_since = next(h.at for h in r.history if h.status == ActionStatus.PENDING_APPROVAL)
            waited = workflow.now() - pending_since
            metrics.observe_approval_wait(self._input.config.type, r.action.risk_level.value, waited)
        r.status = status
        r.history.append(StatusChange(status=status, at=workflow.now(), note=note))
        if not status.is_final:  # final statuses are counted once, by _finish
            metrics.count_action_status(self._input.config.type, status.value)
        if not publish:
            return
        # The agent, its type and the risk were set when the agent started this workflow.
        # The status and the inbox's columns (requested at, approvals so far and needed).
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.ACTION_STATUS.value_set(status.value),
            sa.REQUESTED_AT.value_set(r.history[0].at),
            sa.APPROVALS.value_set(approvals_count(r)),
            sa.APPROVALS_NEEDED.value_set(self._input.decision.required_approvals),
        ]
        workflow.upsert_search_attributes(updates)
        self._refresh_details()

    def _refresh_details(self) -> None:
        workflow.set_current_details(
            details_markdown(self._record, self._input.decision, self._input.config.approval)
        )

    async def _report_and_wait(self, status: ActionStatus) -> None:
        r = self._record
        outcome = ActionOutcome(
            action_id=r.action.id,
            event_id=r.action.event_id or "",
            status=status,
            success=status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED) if status.is_final else None,
            message=r.error or (r.result.message if r.result else ""),
            duration_seconds=(workflow.now() - r.history[0].at).total_seconds() if status.is_final else None,
        )
        try:
            await workflow.get_external_workflow_handle(self._input.agent_workflow_id).signal(
                agent_contract.ACTION_FINISHED, outcome
            )
        except Exception as err:  # the agent may have stopped; the action's record stands
            workflow.logger.info(
                "could not report %s to %s: %s", status.value, self._input.agent_workflow_id, err
            )
