"""The decisions people send: the approve / reject signals and the ``decide`` update.

Every channel goes through one gate (``approval_gate.check_decision``: the signed token, the
approver's role, the quorum, the plan digest), and every outcome is recorded and audited: an
accepted decision as an approval row, a refused one as a refusal the person can read in the Web
UI's current details. The signals are typed by hand (Web UI, ``temporal`` CLI), so they arrive raw
and are decoded here: a payload that is not JSON, or not an ``ApprovalRequest``, is refused and
audited like any other refusal instead of being dropped by the SDK.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from aiops.contracts.action import (
        APPROVAL_REFUSED,
        MAX_REFUSALS_KEPT,
        NO_INPUT,
        ActionRecord,
        ActionStatus,
        ApprovalRecord,
        ApprovalRequest,
        DecisionRequest,
        RefusedApproval,
    )
    from aiops.contracts.activities import AuditStep
    from aiops.contracts.errors import describe_validation_error
    from workflows.action.approval_gate import approvals_count, check_decision
    from workflows.action.context import ActionContext
    from workflows.approval_token import Verified

# What a refusal of an unreadable signal names as its sender: there is no name to read.
UNREADABLE = "<unreadable payload>"


class Approvals:
    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx

    def take_signal(self, raw: RawValue, approve: bool) -> None:
        """An approve or reject signal: decoded, checked, then applied or refused (and audited)."""
        try:
            payload = self._decode(raw)
        except Exception as err:  # whatever the converter raises: refused and audited, never dropped
            reason = f"the payload is not JSON ({type(err).__name__}: {str(err)[:120]})"
            self._refuse(UNREADABLE, approve, "", "signal", f'{reason} (send {{"approver": ...}})')
            return
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

    def decide(self, request: DecisionRequest) -> ActionRecord:
        """The ``decide`` update: a refusal fails it with the reason, after it was recorded and
        audited here."""
        reason, claims = self._check(request, request.approve)
        if reason is not None:
            self._refuse(request.approver, request.approve, request.comment, "update", reason)
            # details: the refusal is in this workflow's audit already
            raise ApplicationError(reason, {"audited": True}, type=APPROVAL_REFUSED, non_retryable=True)
        self._apply(request, approve=request.approve, channel="update", claims=claims)
        return self._ctx.record

    def validate_decide(self, request: DecisionRequest) -> None:
        """Only what is no decision at all is refused here, before history; who may decide is
        settled in ``decide``, where the refusal is recorded."""
        r = self._ctx.record
        if r.status != ActionStatus.PENDING_APPROVAL:
            reason = f"action {r.action.id} is no longer pending approval (it is {r.status.value})"
            raise ApplicationError(reason, type=APPROVAL_REFUSED, non_retryable=True)

    @staticmethod
    def _decode(raw: RawValue) -> Any:
        """The signal's JSON value (None: it came with no input, like ``{}``)."""
        if raw is NO_INPUT:
            return None
        return workflow.payload_converter().from_payload(raw.payload)

    def _check(self, request: ApprovalRequest, approve: bool) -> tuple[str | None, Verified | None]:
        """Why ``request`` may not decide (None: it may), and who the verified token proves."""
        info = workflow.info()
        return check_decision(
            self._ctx.record, self._ctx.input.config, request, approve, info.workflow_id, workflow.now()
        )

    def _apply(
        self, request: ApprovalRequest, approve: bool, channel: str, claims: Verified | None = None
    ) -> None:
        ctx, r = self._ctx, self._ctx.record
        r.approvals.append(
            ApprovalRecord(
                approver=request.approver,
                approved=approve,
                comment=request.comment,
                at=workflow.now(),
                channel=channel,
                plan_digest=r.plan_digest,
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
        ctx.audit.record(
            AuditStep.APPROVAL,
            f"approval:{len(r.approvals)}",
            actor=request.approver,
            approved=approve,
            comment=request.comment,
            channel=channel,
            plan_digest=r.plan_digest,
            **detail,
        )
        if not approve:
            ctx.rejected = True
            r.error = f"rejected by {request.approver}: {request.comment}".rstrip(": ")
        elif not self._completes_quorum():  # that one's count is published with ``executing``
            ctx.publish_approvals()
        ctx.refresh_details()

    def _completes_quorum(self) -> bool:
        """Whether the approvals now add up for an action still waiting, which publishes
        ``executing`` a task after execute is dispatched (``PUBLISH_AFTER_DISPATCH``): every way on
        from here publishes the approvals count with the next status."""
        ctx = self._ctx
        return (
            ctx.publish_after_dispatch
            and ctx.record.status == ActionStatus.PENDING_APPROVAL
            and approvals_count(ctx.record) >= ctx.input.decision.required_approvals
        )

    def _refuse(self, approver: str, approve: bool, comment: str, channel: str, reason: str) -> None:
        ctx, r = self._ctx, self._ctx.record
        r.refused_total += 1
        r.refused.append(
            RefusedApproval(
                approver=approver,
                approved=approve,
                comment=comment,
                at=workflow.now(),
                channel=channel,
                reason=reason,
            )
        )
        del r.refused[:-MAX_REFUSALS_KEPT]
        ctx.audit.record(
            AuditStep.APPROVAL_REFUSED,
            f"refused:{r.refused_total}",
            actor=approver,
            approved=approve,
            comment=comment,
            channel=channel,
            reason=reason,
        )
        workflow.logger.warning("refused %s from %s: %s", channel, approver, reason)
        ctx.refresh_details()
