"""Who may approve or reject an action: one pure check behind every channel.

The signal handlers and the ``decide`` update ask ``check_decision``; a non-empty reason refuses
the decision.
"""

from __future__ import annotations

from datetime import datetime

from aiops.contracts.action import ActionRecord, ActionStatus, ApprovalRequest
from aiops.contracts.config import AgentConfig
from aiops.contracts.policy import PolicyDecision
from workflows.approval_token import TokenRefused, Verb, Verified, identity_roles, verify_identity


def _by_name(
    record: ActionRecord, config: AgentConfig, request: ApprovalRequest, approve: bool
) -> str | None:
    """Why ``request`` may not approve (or reject) this action, taking its name on trust (dev
    mode, ``approval.allow_unsigned``), or None if it may."""
    reason = _not_pending(record)
    if reason is not None:
        return reason
    approver = config.approval.approver(request.approver)
    if approver is None:
        if not config.approval.approvers:
            return (
                f"unknown approver {request.approver!r}: this agent has no approvers; "
                "add them under approval.approvers in its config"
            )
        known = ", ".join(a.name for a in config.approval.approvers)
        return f"unknown approver {request.approver!r} (known approvers: {known})"
    return _authority(record, request, approver.name, approver.roles, approve)


def _not_pending(record: ActionRecord) -> str | None:
    if record.status != ActionStatus.PENDING_APPROVAL:
        return f"action {record.action.id} is no longer pending approval (it is {record.status.value})"
    return None


def _authority(
    record: ActionRecord, request: ApprovalRequest, name: str, roles: list[str], approve: bool
) -> str | None:
    """Whether ``name`` with ``roles`` may decide: role, not the requester, once, the plan reviewed."""
    verb = "approve" if approve else "reject"
    decision: PolicyDecision | None = record.decision
    allowed = set(decision.allowed_roles if decision else [])
    if allowed and not allowed.intersection(roles):
        return (
            f"{name} may not {verb} {record.action.risk_level.value} risk actions: "
            f"needs one of the roles {sorted(allowed)}, has {sorted(roles)}"
        )
    requester = record.action.requested_by or ""
    if approve and name in (requester, requester.removeprefix("user:")):
        return f"{name} requested this action and may not approve it"
    if approve and any(a.approver == name and a.approved for a in record.approvals):
        return f"{name} has already approved this action; a second approver is needed"
    if request.plan_digest is not None and request.plan_digest != record.plan_digest:
        return (
            f"the plan changed since it was reviewed (digest {request.plan_digest[:12]} given, "
            f"current {str(record.plan_digest)[:12]}); review the current plan and decide again"
        )
    return None


def check_decision(
    record: ActionRecord,
    config: AgentConfig,
    request: ApprovalRequest,
    approve: bool,
    workflow_id: str,
    now: datetime,
) -> tuple[str | None, Verified | None]:
    """Why ``request`` may not decide (None: it may), and who the verified token proves.

    Identity from the token, verified against the approvers' public keys and the trusted
    issuers of ``config`` (the one the action was decided under) with ``now`` the workflow's
    clock; then authority (role, requester, quorum, plan digest). Without a token only a
    dev-mode config takes a decision, by name.
    """
    verb: Verb = "approve" if approve else "reject"
    settings = config.approval
    if request.credential is None:
        reason = _by_name(record, config, request, approve)
        if reason is not None or settings.allow_unsigned:
            return reason, None  # dev mode: recorded as unauthenticated everywhere
        return (
            f"{request.approver}'s {verb} is not signed: send a token in 'credential' "
            f"(`aiops approvals {verb} --key FILE` signs; `aiops approvals token {workflow_id}` "
            "prints JSON for the Web UI or the temporal CLI)",
            None,
        )
    reason = _not_pending(record)
    if reason is not None:
        return reason, None
    keys = {a.name: a.public_key for a in settings.approvers if a.public_key}
    used = {a.token_id for a in record.approvals if a.token_id}
    try:
        who = verify_identity(
            request.credential,
            keys,
            settings.issuers,
            workflow_id,
            verb,
            record.plan_digest,
            now,
            used,
            passkeys=settings,
        )
    except TokenRefused as err:
        return str(err), None
    if request.approver and who.name != request.approver:
        return f"the token is signed by {who.name}, but the request names {request.approver}", None
    return _authority(record, request, who.name, identity_roles(config, who), approve), who


def approvals_count(record: ActionRecord) -> int:
    return len({a.approver for a in record.approvals if a.approved})
