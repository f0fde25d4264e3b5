"""Who may approve or reject an action: one pure check behind every channel.

The signal handlers, the ``decide`` update's validator and its handler all ask
``refusal_reason``; a non-empty answer refuses the decision with that reason.
"""

from __future__ import annotations

from agents.models import AgentConfig
from agents.policy import PolicyDecision
from workflows.action_contract import ActionRecord, ActionStatus, ApprovalRequest


def refusal_reason(
    record: ActionRecord, config: AgentConfig, request: ApprovalRequest, approve: bool
) -> str | None:
    """Why ``request`` may not approve (or reject) this action, or None if it may."""
    verb = "approve" if approve else "reject"
    if record.status != ActionStatus.PENDING_APPROVAL:
        return f"action {record.action.id} is no longer pending approval (it is {record.status.value})"
    approver = config.approval.approver(request.approver)
    if approver is None:
        if not config.approval.approvers:
            return (
                f"unknown approver {request.approver!r}: this agent has no approvers; "
                "add them under approval.approvers in its config"
            )
        known = ", ".join(a.name for a in config.approval.approvers)
        return f"unknown approver {request.approver!r} (known approvers: {known})"
    decision: PolicyDecision | None = record.decision
    allowed = set(decision.allowed_roles if decision else [])
    if allowed and not allowed.intersection(approver.roles):
        return (
            f"{request.approver} may not {verb} {record.action.risk_level.value} risk actions: "
            f"needs one of the roles {sorted(allowed)}, has {sorted(approver.roles)}"
        )
    requester = record.action.requested_by or ""
    if approve and request.approver in (requester, requester.removeprefix("user:")):
        return f"{request.approver} requested this action and may not approve it"
    if approve and any(a.approver == request.approver and a.approved for a in record.approvals):
        return f"{request.approver} has already approved this action; a second approver is needed"
    if request.plan_digest is not None and request.plan_digest != record.plan_digest:
        return (
            f"the plan changed since it was reviewed (digest {request.plan_digest[:12]} given, "
            f"current {str(record.plan_digest)[:12]}); review the current plan and decide again"
        )
    return None


def approvals_count(record: ActionRecord) -> int:
    return len({a.approver for a in record.approvals if a.approved})
