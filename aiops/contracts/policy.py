"""The approval policy: a pure function of an agent's config and a proposed action.

``decide`` answers: run now, wait for N approvals from given roles, or deny,
and always says why. Defaults: ``manual`` waits for everything, ``semi_auto``
runs ``low`` on its own, ``full_auto`` runs up to ``medium``. Config can only
tighten that (``approval.auto_execute_max_risk``, ``approval_required``,
``approval.deny_at_or_above``); ``critical`` always needs a person. Both the
workflow and the tests call it, and it is deterministic, so it is safe in
workflow code.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from aiops.contracts.config import AgentConfig
from aiops.contracts.models import AgentAction, AutomationLevel, RiskLevel


class Outcome(StrEnum):
    AUTO_EXECUTE = "auto_execute"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class PolicyDecision(BaseModel):
    outcome: Outcome
    reason: str
    required_approvals: int = 0
    allowed_roles: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = None


class PolicyContext(BaseModel):
    """The agent's recent history that safe autonomy depends on."""

    circuit_open: bool = False
    auto_executions_in_window: int = 0


AUTOMATION_CEILING: dict[AutomationLevel, RiskLevel | None] = {
    AutomationLevel.MANUAL: None,
    AutomationLevel.SEMI_AUTO: RiskLevel.LOW,
    AutomationLevel.FULL_AUTO: RiskLevel.MEDIUM,
}


def auto_ceiling(config: AgentConfig) -> RiskLevel | None:
    """The highest risk that may run without a person; config can only lower it."""
    ceiling = AUTOMATION_CEILING[config.automation_level]
    tighter = config.approval.auto_execute_max_risk
    if ceiling is None or tighter is None:
        return ceiling
    return tighter if tighter.rank < ceiling.rank else ceiling


def decide(config: AgentConfig, action: AgentAction, context: PolicyContext | None = None) -> PolicyDecision:
    context = context or PolicyContext()
    risk = action.risk_level
    rule = config.approval.rule_for(risk)

    def needs_approval(reason: str) -> PolicyDecision:
        return PolicyDecision(
            outcome=Outcome.REQUIRE_APPROVAL,
            reason=reason,
            required_approvals=rule.required_approvals,
            allowed_roles=list(rule.roles),
            timeout_seconds=rule.timeout_seconds,
        )

    if not config.enabled:
        return PolicyDecision(outcome=Outcome.DENY, reason="the agent is disabled in its config")
    deny_at = config.approval.deny_at_or_above
    if deny_at is not None and risk.rank >= deny_at.rank:
        return PolicyDecision(
            outcome=Outcome.DENY,
            reason=f"config denies actions of risk {deny_at.value} or above (this one is {risk.value})",
        )
    if risk == RiskLevel.CRITICAL:
        return needs_approval("critical actions always need approval")
    if config.approval_required:
        return needs_approval("the agent's config sets approval_required")
    ceiling = auto_ceiling(config)
    if ceiling is None or risk.rank > ceiling.rank:
        limit = "nothing" if ceiling is None else f"up to {ceiling.value}"
        return needs_approval(
            f"automation level {config.automation_level.value} runs {limit} on its own; "
            f"this action is {risk.value} risk"
        )
    if context.circuit_open:
        return needs_approval(
            "the circuit breaker is open after repeated failed actions; a person must reset it"
        )
    most = config.approval.max_auto_executions
    if most is not None and context.auto_executions_in_window >= most:
        return needs_approval(
            f"automatic execution limit reached ({most} per "
            f"{config.approval.auto_execution_window_seconds:g}s)"
        )
    return PolicyDecision(
        outcome=Outcome.AUTO_EXECUTE,
        reason=(
            f"automation level {config.automation_level.value} runs {risk.value} risk "
            f"actions on its own (ceiling {ceiling.value})"
        ),
    )
