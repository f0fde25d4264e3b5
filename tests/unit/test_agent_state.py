"""Pure state changes of the agent: action outcomes and the circuit breaker, config-change refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiops.contracts.action import ActionOutcome, ActionStatus
from aiops.contracts.agent import AgentRunState, AgentState, PendingAction, ReconfigureRequest, StopRequest
from aiops.contracts.config import AgentConfig, ApprovalSettings
from aiops.contracts.models import RiskLevel
from workflows.agent.config_change import parse_request, refusal
from workflows.agent.state import policy_context, record_outcome, status_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = AgentConfig(id="a1", name="a", type="example", approval=ApprovalSettings(circuit_breaker_failures=2))


def with_pending(*ids: str) -> AgentRunState:
    s = AgentRunState(config=CONFIG, state=AgentState.RUNNING)
    for action_id in ids:
        s.pending_actions[action_id] = PendingAction(
            action_id=action_id, event_id="e", status="proposed", risk_level=RiskLevel.LOW,
            description="d", proposed_at=NOW,
        )  # fmt: skip
    return s


def outcome(action_id: str, status: ActionStatus, seconds: float | None = 1.0) -> ActionOutcome:
    return ActionOutcome(action_id=action_id, event_id="e", status=status, duration_seconds=seconds)


@pytest.mark.parametrize(
    ("status", "field"),
    [
        (ActionStatus.SUCCEEDED, "actions_succeeded"),
        (ActionStatus.VERIFIED, "actions_succeeded"),
        (ActionStatus.FAILED, "actions_failed"),
        (ActionStatus.ROLLED_BACK, "actions_failed"),
        (ActionStatus.REJECTED, "actions_rejected"),
        (ActionStatus.EXPIRED, "actions_rejected"),
        (ActionStatus.DENIED, "actions_rejected"),
    ],
)
def test_a_final_outcome_is_counted_once(status: ActionStatus, field: str) -> None:
    s = with_pending("x")
    assert record_outcome(s, outcome("x", status)) is True
    assert record_outcome(s, outcome("x", status)) is False  # a repeated report
    assert getattr(s.counters, field) == 1 and s.pending_actions == {}
    assert s.recent_action_seconds == [1.0]


def test_a_status_change_updates_the_pending_action_only() -> None:
    s = with_pending("x")
    assert record_outcome(s, outcome("x", ActionStatus.PENDING_APPROVAL, None)) is False
    assert s.pending_actions["x"].status == "pending_approval"
    assert record_outcome(s, outcome("unknown", ActionStatus.FAILED)) is False


def test_the_circuit_breaker_opens_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    s = with_pending("a", "b", "c", "d")
    record_outcome(s, outcome("a", ActionStatus.FAILED))
    record_outcome(s, outcome("b", ActionStatus.SUCCEEDED))
    record_outcome(s, outcome("c", ActionStatus.FAILED))
    assert not s.circuit_open
    record_outcome(s, outcome("d", ActionStatus.ROLLED_BACK))
    assert s.circuit_open and s.consecutive_failures == 2
    assert status_of(s).circuit_open and status_of(s).success_rate == pytest.approx(1 / 4)


def test_the_auto_execution_window_forgets_old_executions() -> None:
    s = with_pending()
    s.auto_executions = [NOW - timedelta(hours=2), NOW - timedelta(minutes=5)]
    assert policy_context(s, NOW).auto_executions_in_window == 1
    assert s.auto_executions == [NOW - timedelta(minutes=5)]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({}, "send exactly one of"),
        ({"version": 2, "rollback_to": 1}, "send exactly one of"),
        ({"version": 0}, "version:"),
        ({"version": 2, "typo": 1}, "typo"),
        ({"version": 2, "comment": "x" * 5000}, "comment:"),
        ("text", "config refused"),
        (None, "config refused"),
    ],
)
def test_a_malformed_reconfigure_request_names_its_problem(payload: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_request(payload)


@pytest.mark.parametrize(
    ("state", "stopping", "request_", "reason"),
    [
        (AgentState.RUNNING, False, ReconfigureRequest(version=2), None),
        (AgentState.STOPPED, False, ReconfigureRequest(version=2), "start it again"),
        (AgentState.FAILED, False, ReconfigureRequest(version=2), "is failed"),
        (AgentState.RUNNING, True, ReconfigureRequest(version=2), "is stopping"),
        (AgentState.RUNNING, False, ReconfigureRequest(config=CONFIG.model_copy(update={"id": "b2"})), "id:"),
        (
            AgentState.RUNNING,
            False,
            ReconfigureRequest(config=CONFIG.model_copy(update={"type": "other"})),
            "cannot change type",
        ),
        (AgentState.PAUSED, False, ReconfigureRequest(config=CONFIG), None),
    ],
)
def test_config_change_refusals(
    state: AgentState, stopping: bool, request_: ReconfigureRequest, reason: str | None
) -> None:
    s = AgentRunState(config=CONFIG, state=state, stop_request=StopRequest() if stopping else None)
    got = refusal(s, request_)
    assert (got is None) if reason is None else (got is not None and reason in got)
