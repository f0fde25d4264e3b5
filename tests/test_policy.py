"""The approval policy: every cell of automation level x risk x approval_required, and tightening."""

from __future__ import annotations

import pytest

from agents import AgentAction, AgentConfig, AutomationLevel, RiskLevel
from aiops.contracts.policy import Outcome, PolicyContext, decide

AUTO, WAIT = Outcome.AUTO_EXECUTE, Outcome.REQUIRE_APPROVAL

# (automation level, risk) -> outcome with approval_required = False
DEFAULT_CELLS = {
    (AutomationLevel.MANUAL, RiskLevel.LOW): WAIT,
    (AutomationLevel.MANUAL, RiskLevel.MEDIUM): WAIT,
    (AutomationLevel.MANUAL, RiskLevel.HIGH): WAIT,
    (AutomationLevel.MANUAL, RiskLevel.CRITICAL): WAIT,
    (AutomationLevel.SEMI_AUTO, RiskLevel.LOW): AUTO,
    (AutomationLevel.SEMI_AUTO, RiskLevel.MEDIUM): WAIT,
    (AutomationLevel.SEMI_AUTO, RiskLevel.HIGH): WAIT,
    (AutomationLevel.SEMI_AUTO, RiskLevel.CRITICAL): WAIT,
    (AutomationLevel.FULL_AUTO, RiskLevel.LOW): AUTO,
    (AutomationLevel.FULL_AUTO, RiskLevel.MEDIUM): AUTO,
    (AutomationLevel.FULL_AUTO, RiskLevel.HIGH): WAIT,
    (AutomationLevel.FULL_AUTO, RiskLevel.CRITICAL): WAIT,
}


def config(level: AutomationLevel, approval_required: bool = False, **approval) -> AgentConfig:
    return AgentConfig(
        id="a1", name="a", type="example", automation_level=level,
        approval_required=approval_required, approval=approval,
    )  # fmt: skip


def action(risk: RiskLevel) -> AgentAction:
    return AgentAction(id="x", agent_id="a1", type="restart_service", description="d", risk_level=risk)


@pytest.mark.parametrize(("level", "risk"), list(DEFAULT_CELLS))
def test_default_cell(level: AutomationLevel, risk: RiskLevel) -> None:
    decision = decide(config(level), action(risk))
    assert decision.outcome == DEFAULT_CELLS[(level, risk)]
    assert decision.reason
    if decision.outcome == WAIT:
        assert decision.required_approvals == (2 if risk == RiskLevel.CRITICAL else 1)
        assert decision.allowed_roles
        assert decision.timeout_seconds and decision.timeout_seconds > 0


@pytest.mark.parametrize(("level", "risk"), list(DEFAULT_CELLS))
def test_approval_required_forces_approval_in_every_cell(level: AutomationLevel, risk: RiskLevel) -> None:
    decision = decide(config(level, approval_required=True), action(risk))
    assert decision.outcome == WAIT
    expected = "critical actions always need approval" if risk == RiskLevel.CRITICAL else "approval_required"
    assert expected in decision.reason


def test_critical_needs_two_approvers_even_in_full_auto() -> None:
    decision = decide(config(AutomationLevel.FULL_AUTO), action(RiskLevel.CRITICAL))
    assert (decision.outcome, decision.required_approvals) == (WAIT, 2)


def test_config_can_tighten_but_not_loosen_the_automation_ceiling() -> None:
    tightened = config(AutomationLevel.FULL_AUTO, auto_execute_max_risk="low")
    assert decide(tightened, action(RiskLevel.MEDIUM)).outcome == WAIT
    assert decide(tightened, action(RiskLevel.LOW)).outcome == AUTO
    loosened = config(AutomationLevel.SEMI_AUTO, auto_execute_max_risk="high")
    assert decide(loosened, action(RiskLevel.MEDIUM)).outcome == WAIT
    assert decide(loosened, action(RiskLevel.HIGH)).outcome == WAIT


def test_deny_at_or_above() -> None:
    c = config(AutomationLevel.FULL_AUTO, deny_at_or_above="high")
    assert decide(c, action(RiskLevel.HIGH)).outcome == Outcome.DENY
    assert decide(c, action(RiskLevel.CRITICAL)).outcome == Outcome.DENY
    assert decide(c, action(RiskLevel.MEDIUM)).outcome == AUTO


def test_disabled_agent_is_denied() -> None:
    c = config(AutomationLevel.FULL_AUTO).model_copy(update={"enabled": False})
    assert decide(c, action(RiskLevel.LOW)).outcome == Outcome.DENY


def test_rules_per_risk_level_set_roles_quorum_and_timeout() -> None:
    c = config(
        AutomationLevel.MANUAL,
        rules={"medium": {"roles": ["dba"], "required_approvals": 3, "timeout_seconds": 60}},
    )
    decision = decide(c, action(RiskLevel.MEDIUM))
    assert (decision.allowed_roles, decision.required_approvals, decision.timeout_seconds) == (["dba"], 3, 60)
    assert decide(c, action(RiskLevel.CRITICAL)).required_approvals == 2  # defaults fill the gaps


def test_open_circuit_breaker_sends_everything_to_approval() -> None:
    decision = decide(
        config(AutomationLevel.FULL_AUTO), action(RiskLevel.LOW), PolicyContext(circuit_open=True)
    )
    assert decision.outcome == WAIT
    assert "circuit breaker" in decision.reason


def test_automatic_execution_limit_per_window() -> None:
    c = config(AutomationLevel.FULL_AUTO, max_auto_executions=2)
    assert decide(c, action(RiskLevel.LOW), PolicyContext(auto_executions_in_window=1)).outcome == AUTO
    limited = decide(c, action(RiskLevel.LOW), PolicyContext(auto_executions_in_window=2))
    assert limited.outcome == WAIT
    assert "limit reached" in limited.reason
