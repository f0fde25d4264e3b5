"""Config cases judged without servers: the verdicts, their messages, and the bounds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aiops.contracts.config import MAX_CONFIG_CASES, AgentConfig, ConfigCase
from aiops.contracts.config_cases import failed_cases_message, judge_case
from aiops.contracts.models import ActionType, AgentAction, RiskLevel


def case(name: str = "disk full", **expect: Any) -> ConfigCase:
    return ConfigCase.model_validate(
        {"name": name, "event": {"id": "e1", "type": "alert", "source": "host-1"}, "expect": expect}
    )


def config(**fields: Any) -> AgentConfig:
    return AgentConfig(id="a1", name="a", type="scripted", **fields)


def action(risk: RiskLevel = RiskLevel.LOW) -> AgentAction:
    return AgentAction(id="x", agent_id="a1", type=ActionType.RUN_COMMAND, description="d", risk_level=risk)


def test_a_matching_proposal_passes() -> None:
    result = judge_case(config(), case(action="run_command", risk="low", outcome="run"), action())
    assert result.passed and result.got == "action run_command, risk low, outcome run"


def test_each_difference_is_named() -> None:
    c = case("medium cleanup", action="restart_service", risk="low", outcome="run")
    result = judge_case(config(), c, action(RiskLevel.MEDIUM))
    assert not result.passed
    assert result.problems == [
        "expected action restart_service, got run_command",
        "expected risk low, got medium",
        "expected outcome run, got approval",
    ]
    [line] = failed_cases_message([result])
    assert line.startswith(
        "case 'medium cleanup' failed: expected action restart_service, risk low, outcome run;"
    )


def test_nothing_proposed_and_errors() -> None:
    assert judge_case(config(), case(action=None), None).passed
    assert not judge_case(config(), case(action=None), action()).passed
    missed = judge_case(config(), case(action="run_command"), None)
    assert missed.problems == ["expected action run_command, nothing was proposed"]
    crashed = judge_case(config(), case(action=None), None, "RuntimeError: boom")
    assert not crashed.passed and crashed.got == "error: RuntimeError: boom"


def test_the_outcome_is_the_policy_of_the_config() -> None:
    c = case(action="run_command", outcome="deny")
    assert not judge_case(config(), c, action(RiskLevel.HIGH)).passed
    strict = config(approval={"deny_at_or_above": "high"})
    assert judge_case(strict, c, action(RiskLevel.HIGH)).passed


def test_cases_are_bounded() -> None:
    with pytest.raises(ValidationError, match="action"):
        ConfigCase.model_validate({"name": "n", "event": {"type": "alert", "source": "s"}, "expect": {}})
    big = {
        "name": "big",
        "event": {"type": "alert", "source": "s", "data": {"x": "y" * 20_000}},
        "expect": {"action": None},
    }
    with pytest.raises(ValidationError, match="over 16000"):
        ConfigCase.model_validate(big)
    with pytest.raises(ValidationError, match="named twice"):
        config(tests=[case("same", action=None), case("same", action=None)])
    with pytest.raises(ValidationError, match="at most"):
        config(tests=[case(f"c{i}", action=None) for i in range(MAX_CONFIG_CASES + 1)])
    with pytest.raises(ValidationError):
        case(action="run_command", outcome="maybe")
