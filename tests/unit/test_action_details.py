"""What the Web UI shows an approver: current details that say what to do now, or what happened.

The browser test (tests/test_web_ui.py) shows them rendered; these pin the rules: a refusal
heads the facts, the deadline says what follows it, commands stay on short lines, and a final
action says nothing about deciding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiops.contracts.action import ActionRecord, ActionStatus, ApprovalRecord, RefusedApproval
from aiops.contracts.config import ApprovalSettings, ExpiryAction
from aiops.contracts.models import AgentAction, SystemEvent
from aiops.contracts.policy import Outcome, PolicyDecision
from workflows.action.details import deadline_step, details_markdown, execute_step, plan_step, static_details

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
ACTION = AgentAction(
    id="action-a1:e1",
    agent_id="a1",
    type="restart_service",
    description="restart web",
    target_resources=["web-1", "web-2", "web-3"],
    risk_level="high",
)
EVENT = SystemEvent(id="e1", type="alert", source="s", timestamp=NOW)
DECISION = PolicyDecision(
    outcome=Outcome.REQUIRE_APPROVAL, reason="high risk", required_approvals=2, allowed_roles=["sre"]
)
# The Web UI's Current Details column shows about 70 characters of a code line.
CODE_LINE_MAX = 70


def pending(**extra: object) -> ActionRecord:
    return ActionRecord(
        action=ACTION,
        event=EVENT,
        config_version=1,
        status=ActionStatus.PENDING_APPROVAL,
        decision=DECISION,
        approval_deadline=NOW + timedelta(hours=4),
        **extra,  # type: ignore[arg-type]
    )


def code_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("    ")]


def test_pending_says_what_to_do_by_when_and_what_follows() -> None:
    text = details_markdown(pending(), DECISION, ApprovalSettings(escalation_target="pager"))
    assert text.splitlines()[0] == "### Waiting for approval: 0 of 2 (roles: sre)"
    assert "**Decide before** 2026-01-01 14:00 UTC; then it escalates to pager" in text
    assert "Send an Update → `decide`" in text and "aiops approvals approve action-a1:e1" in text
    assert all(len(line) <= CODE_LINE_MAX for line in code_lines(text)), code_lines(text)
    expiring = details_markdown(pending(), DECISION, ApprovalSettings(on_expiry=ExpiryAction.REJECT))
    assert "then it expires as rejected" in expiring


def test_a_refusal_heads_the_facts_with_its_reason() -> None:
    refused = RefusedApproval(
        approver="mallory", approved=True, comment="", at=NOW, channel="signal", reason="unknown approver"
    )
    approval = ApprovalRecord(approver="alice", approved=True, comment="ok", at=NOW, channel="update")
    text = details_markdown(pending(refused=[refused], refused_total=1, approvals=[approval]), DECISION)
    facts = [line for line in text.splitlines() if line.startswith("- ")]
    assert (
        facts[0] == "- **Refused**: mallory may not approve (signal, 2026-01-01 10:00 UTC): unknown approver"
    )
    assert (
        "- **Approved by** alice (UNAUTHENTICATED, by name only; update, 2026-01-01 10:00 UTC): ok" in facts
    )
    assert text.splitlines()[0] == "### Waiting for approval: 1 of 2 (roles: sre)"


def test_a_final_action_says_what_happened_not_how_to_decide() -> None:
    approval = ApprovalRecord(approver="bob", approved=False, comment="too risky", at=NOW, channel="signal")
    record = pending(approvals=[approval]).model_copy(
        update={"status": ActionStatus.REJECTED, "error": "rejected by bob: too risky"}
    )
    text = details_markdown(record, DECISION)
    assert text.splitlines()[0] == "### Rejected: rejected by bob: too risky"
    assert "**Rejected by** bob (UNAUTHENTICATED, by name only; signal" in text
    assert "Decide" not in text and "Send an Update" not in text and "Nothing is left to decide" in text


def test_static_details_stay_true_after_the_end_and_wrap_their_commands() -> None:
    text = static_details(ACTION, EVENT, DECISION, ACTION.id)
    assert "Approve from a terminal" not in text and "While it waits for approval" in text
    assert "--name decide" in text and "--name approve" in text
    assert all(len(line) <= CODE_LINE_MAX for line in code_lines(text)), code_lines(text)
    for internal in ("hold", "release", "abort"):
        assert f"- `{internal}` (signal): Internal" in text


def test_step_labels_are_sentences() -> None:
    assert plan_step(ACTION) == "plan: dry run of restart_service on web-1 and 2 more resources"
    assert (
        execute_step(ACTION, 3) == "execute restart_service on web-1 and 2 more resources (up to 3 attempts)"
    )
    assert deadline_step(NOW, "then expires") == "approval deadline 10:00 UTC (then expires)"
