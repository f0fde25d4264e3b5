"""Judging a config's cases (``AgentConfig.tests``): pure, so every place that runs them — the
reconfigure path's validation activity, ``aiops config test``, the unit tests — judges alike.

Running a case needs the agent's ``process_event`` (agent code, on a worker or in the CLI);
judging what it proposed needs only the policy, which is here.
"""

from __future__ import annotations

from pydantic import BaseModel

from aiops.contracts.config import AgentConfig, CaseOutcome, ConfigCase
from aiops.contracts.models import AgentAction
from aiops.contracts.policy import Outcome, PolicyContext, decide

OUTCOME_OF: dict[Outcome, CaseOutcome] = {
    Outcome.AUTO_EXECUTE: CaseOutcome.RUN,
    Outcome.REQUIRE_APPROVAL: CaseOutcome.APPROVAL,
    Outcome.DENY: CaseOutcome.DENY,
}


class CaseResult(BaseModel):
    """One case's verdict: what was expected, what happened, and whether they agree."""

    name: str
    passed: bool
    expected: str
    got: str
    problems: list[str] = []


def _describe(action: str | None, risk: str | None, outcome: str | None) -> str:
    if action is None:
        return "no action"
    parts = [f"action {action}"]
    if risk is not None:
        parts.append(f"risk {risk}")
    if outcome is not None:
        parts.append(f"outcome {outcome}")
    return ", ".join(parts)


def judge_case(
    config: AgentConfig, case: ConfigCase, action: AgentAction | None, error: str | None = None
) -> CaseResult:
    """Compare what the agent proposed for the case's event (or the error it raised) with what
    the case expects; the outcome is ``decide`` under ``config`` with no history."""
    want = case.expect
    expected = _describe(
        want.action,
        want.risk.value if want.risk else None,
        want.outcome.value if want.outcome else None,
    )
    if error is not None:
        return CaseResult(name=case.name, passed=False, expected=expected, got=f"error: {error}"[:500])
    if action is None:
        problems = [] if want.action is None else [f"expected action {want.action}, nothing was proposed"]
        return CaseResult(
            name=case.name, passed=not problems, expected=expected, got="no action", problems=problems
        )
    outcome = OUTCOME_OF[decide(config, action, PolicyContext()).outcome]
    got = _describe(action.type.value, action.risk_level.value, outcome.value)
    problems = []
    if want.action is None:
        problems.append(f"expected no action, {action.type.value} was proposed")
    elif action.type.value != want.action:
        problems.append(f"expected action {want.action}, got {action.type.value}")
    if want.risk is not None and action.risk_level != want.risk:
        problems.append(f"expected risk {want.risk.value}, got {action.risk_level.value}")
    if want.outcome is not None and outcome != want.outcome:
        problems.append(f"expected outcome {want.outcome.value}, got {outcome.value}")
    return CaseResult(name=case.name, passed=not problems, expected=expected, got=got, problems=problems)


def failed_cases_message(results: list[CaseResult]) -> list[str]:
    """One problem line per failed case, naming it, what was expected and what happened."""
    return [
        f"case {r.name!r} failed: expected {r.expected}; got {r.got}"
        + (f" ({'; '.join(r.problems)})" if r.problems else "")
        for r in results
        if not r.passed
    ]
