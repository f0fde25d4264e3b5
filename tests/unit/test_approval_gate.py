"""Who may approve or reject: ``check_decision`` for every rule, as a table (by name, in dev
mode, where no token is needed), then what a signed token changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aiops.contracts.action import ActionRecord, ActionStatus, ApprovalRecord, ApprovalRequest
from aiops.contracts.config import AgentConfig, ApprovalSettings, Approver
from aiops.contracts.models import AgentAction, SystemEvent
from aiops.contracts.policy import Outcome, PolicyDecision
from workflows.action.approval_gate import approvals_count, check_decision

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEAM = ApprovalSettings(
    approvers=[
        Approver(name="alice", roles=["sre"]),
        Approver(name="bob", roles=["sre", "admin"]),
        Approver(name="oscar", roles=["operator"]),
        Approver(name="rita", roles=["sre"]),
    ]
)
CONFIG = AgentConfig(id="a1", name="a", type="example", approval=TEAM)
DEV_MODE = CONFIG.model_copy(update={"approval": TEAM.model_copy(update={"allow_unsigned": True})})


def record(status: ActionStatus = ActionStatus.PENDING_APPROVAL, **extra: object) -> ActionRecord:
    action = AgentAction(
        id="action-a1:e1", agent_id="a1", type="restart_service", description="d", requested_by="user:rita"
    )
    event = SystemEvent(id="e1", type="alert", source="s", timestamp=NOW)
    decision = PolicyDecision(
        outcome=Outcome.REQUIRE_APPROVAL, reason="high risk", required_approvals=2, allowed_roles=["sre"]
    )
    return ActionRecord(
        action=action,
        event=event,
        config_version=1,
        status=status,
        decision=decision,
        plan_digest="abc123",
        **extra,  # type: ignore[arg-type]
    )


APPROVED_BY_ALICE = [ApprovalRecord(approver="alice", approved=True, comment="", at=NOW, channel="update")]


@pytest.mark.parametrize(
    ("rec", "config", "request_", "approve", "reason"),
    [
        (record(), CONFIG, ApprovalRequest(approver="alice"), True, None),
        (record(), CONFIG, ApprovalRequest(approver="bob"), False, None),
        (
            record(ActionStatus.EXECUTING),
            CONFIG,
            ApprovalRequest(approver="alice"),
            True,
            "no longer pending",
        ),
        (record(), CONFIG, ApprovalRequest(approver="mallory"), True, "unknown approver 'mallory' (known"),
        (
            record(),
            CONFIG.model_copy(update={"approval": ApprovalSettings(allow_unsigned=True)}),
            ApprovalRequest(approver="alice"),
            True,
            "this agent has no approvers",
        ),
        (record(), CONFIG, ApprovalRequest(approver="oscar"), True, "needs one of the roles ['sre']"),
        (record(), CONFIG, ApprovalRequest(approver="oscar"), False, "may not reject"),
        (record(), CONFIG, ApprovalRequest(approver="rita"), True, "requested this action"),
        (record(), CONFIG, ApprovalRequest(approver="rita"), False, None),  # a requester may withdraw
        (
            record(approvals=APPROVED_BY_ALICE),
            CONFIG,
            ApprovalRequest(approver="alice"),
            True,
            "already approved",
        ),
        (
            record(),
            CONFIG,
            ApprovalRequest(approver="alice", plan_digest="zzz"),
            True,
            "the plan changed since it was reviewed",
        ),
        (record(), CONFIG, ApprovalRequest(approver="alice", plan_digest="abc123"), True, None),
    ],
)
def test_check_decision_by_name(
    rec: ActionRecord, config: AgentConfig, request_: ApprovalRequest, approve: bool, reason: str | None
) -> None:
    if config is CONFIG:
        config = DEV_MODE
    got, claims = check_decision(rec, config, request_, approve, "action-a1:e1", NOW)
    assert claims is None  # no token: nothing proven, whatever the verdict
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_approvals_are_counted_per_distinct_approver() -> None:
    twice = APPROVED_BY_ALICE * 2 + [
        ApprovalRecord(approver="bob", approved=False, comment="", at=NOW, channel="signal")
    ]
    assert approvals_count(record(approvals=twice)) == 1


def test_check_decision_needs_a_token_unless_the_config_allows_names_alone() -> None:
    from workflows.approval_token import generate_private_key, public_key_text, sign

    key = generate_private_key()
    alice = TEAM.approvers[0].model_copy(update={"public_key": public_key_text(key.public_key())})
    signed = CONFIG.model_copy(
        update={"approval": TEAM.model_copy(update={"approvers": [alice, *TEAM.approvers[1:]]})}
    )
    by_name = ApprovalRequest(approver="alice")

    reason, _ = check_decision(record(), signed, by_name, True, "action-a1:e1", NOW)
    assert reason is not None and "is not signed" in reason
    assert check_decision(record(), DEV_MODE, by_name, True, "action-a1:e1", NOW) == (None, None)
    # Unsigned and not dev mode: what no name could ever do is said first.
    reason, _ = check_decision(
        record(), signed, ApprovalRequest(approver="mallory"), True, "action-a1:e1", NOW
    )
    assert reason is not None and "unknown approver 'mallory'" in reason

    token = sign(key, "alice", "action-a1:e1", "approve", "abc123", NOW)
    reason, claims = check_decision(
        record(), signed, ApprovalRequest(approver="alice", credential=token), True, "action-a1:e1", NOW
    )
    assert reason is None and claims is not None and claims.name == "alice" and claims.issuer is None
    reason, _ = check_decision(
        record(), signed, ApprovalRequest(approver="bob", credential=token), True, "action-a1:e1", NOW
    )
    assert reason is not None and "signed by alice, but the request names bob" in reason
    # Identity first: a token proves who decides, then that person's roles are checked.
    oscar_key = generate_private_key()
    oscar = TEAM.approvers[2].model_copy(update={"public_key": public_key_text(oscar_key.public_key())})
    with_oscar = signed.model_copy(
        update={
            "approval": signed.approval.model_copy(
                update={"approvers": [alice, TEAM.approvers[1], oscar, TEAM.approvers[3]]}
            )
        }
    )
    oscars = sign(oscar_key, "oscar", "action-a1:e1", "approve", "abc123", NOW)
    reason, _ = check_decision(
        record(), with_oscar, ApprovalRequest(approver="oscar", credential=oscars), True, "action-a1:e1", NOW
    )
    assert reason is not None and "oscar may not approve" in reason
