"""The data that crosses workflow boundaries, in the seed's vocabulary.

Every enum travels as a lowercase snake_case string so an operator can type an
event or a config as JSON on the ``temporal`` CLI. Operator-facing models
forbid unknown fields: a typo such as ``"severty"`` is an error, not a silently
dropped value.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid  # not workflow code: only clients draw an event's id (parse_event requires one)
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiops.contracts.text import VisibleName


class EventType(StrEnum):
    INFRASTRUCTURE_DRIFT = "infrastructure_drift"
    ALERT = "alert"
    HEALTH_CHECK = "health_check"
    METRIC_THRESHOLD = "metric_threshold"
    DEPLOYMENT = "deployment"
    SECURITY = "security"
    CONFIG_CHANGE = "config_change"
    AGENT_HEALTH = "agent_health"
    CUSTOM = "custom"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ActionType(StrEnum):
    TERRAFORM_PLAN = "terraform_plan"
    TERRAFORM_APPLY = "terraform_apply"
    RESTART_SERVICE = "restart_service"
    SCALE = "scale"
    ROLLBACK_DEPLOYMENT = "rollback_deployment"
    RUN_COMMAND = "run_command"
    NOTIFY = "notify"
    CUSTOM = "custom"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(RiskLevel).index(self)


class AutomationLevel(StrEnum):
    MANUAL = "manual"
    SEMI_AUTO = "semi_auto"
    FULL_AUTO = "full_auto"


class AgentType(StrEnum):
    """Built-in agent type names; third-party packages may register any other name."""

    TERRAFORM = "terraform"
    KUBERNETES = "kubernetes"
    MONITORING = "monitoring"
    SECURITY = "security"
    COST = "cost"
    EXAMPLE = "example"
    CUSTOM = "custom"


AGENT_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _non_finite(value: Any, where: str) -> list[str]:
    """Infinity and NaN anywhere in free-form settings: JSON cannot carry them through history."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: {value} is not a finite number"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    return []


# Durations are bounded (a year) so that building a timedelta in workflow code can never overflow.
MAX_SECONDS = 366 * 24 * 3600.0
# A config travels in every agent and action workflow's input and state, and through continue-as-new
# (whose input the server caps at 2 MiB): a config is at most 64 KiB, any one text in it 8 KiB.
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_TEXT = 8 * 1024


def _oversized(value: Any, where: str) -> list[str]:
    """Texts (and keys) in free-form settings longer than ``MAX_CONFIG_TEXT`` characters."""
    if isinstance(value, str) and len(value) > MAX_CONFIG_TEXT:
        return [f"{where}: {len(value)} characters, over the {MAX_CONFIG_TEXT}-character limit"]
    if isinstance(value, dict):
        return [
            p
            for k, v in value.items()
            for p in [*_oversized(str(k), f"{where} key"), *_oversized(v, f"{where}.{str(k)[:40]}")]
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _oversized(v, f"{where}[{i}]")]
    return []


class _Strict(BaseModel):
    # Errors never echo the input: a refused config may hold a literal secret. Infinity and NaN
    # are refused: JSON cannot carry them, so they would not survive the trip through history.
    model_config = ConfigDict(
        extra="forbid", use_enum_values=False, hide_input_in_errors=True, allow_inf_nan=False
    )


class CarriesConfig(BaseModel):
    """A model that may carry an agent's config (workflow inputs, status, records): a validation
    error names the field and the problem but never echoes the input, which may hold settings."""

    model_config = ConfigDict(hide_input_in_errors=True)


def _new_event_id() -> str:
    """A client's default event id; workflows only parse events that carry one (``parse_event``)."""
    return str(uuid.uuid4())  # not workflow code: clients only


def _wall_clock() -> datetime:
    """A client's default event time; ``parse_event`` gives workflows ``workflow.now()`` instead."""
    return datetime.now(UTC)  # not workflow code: clients only


class SystemEvent(_Strict):
    """Something that happened in an operated system, delivered to an agent."""

    # Names a person reads and workflow ids are built from: no control, invisible or bidi character.
    id: VisibleName = Field(default_factory=_new_event_id, min_length=1, max_length=128)
    type: EventType
    source: VisibleName = Field(min_length=1)
    severity: Severity = Severity.MEDIUM
    timestamp: datetime = Field(default_factory=_wall_clock)
    data: dict[str, Any] = Field(default_factory=dict)
    correlation_id: VisibleName | None = None


def escalation_alert(
    prefix: str, key: str, source: str, data: dict[str, Any], correlation_id: str
) -> SystemEvent:
    """A high-severity alert one agent's work sends another agent (not workflow code: it reads the
    clock). Its id is ``prefix`` and a digest of ``key``, so a retried sender delivers the same
    event, which the target deduplicates."""
    return SystemEvent(
        id=f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}",
        type=EventType.ALERT,
        source=source,
        severity=Severity.HIGH,
        data=data,
        correlation_id=correlation_id,
    )


class AgentAction(_Strict):
    """A remediation an agent proposes for an event.

    The framework replaces ``id`` with one derived from the agent and the
    triggering event, so a retried decision or a redelivered event can never
    produce a second action with a different idempotency key.
    """

    id: str
    agent_id: str
    type: ActionType
    description: str
    target_resources: list[str] = Field(default_factory=list)
    risk_level: RiskLevel = RiskLevel.MEDIUM
    estimated_impact: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = None
    correlation_id: str | None = None
    requested_by: str | None = None
    # Set by the framework when a hook runs: the key of this action's side effects. Hooks run at
    # least once (retries, worker crashes); the key is the same on every attempt and worker.
    idempotency_key: str | None = None


class ActionResult(_Strict):
    success: bool
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class Plan(_Strict):
    """A dry run: what an action would change, shown to the approver."""

    summary: str
    details: str = ""
    changes: list[str] = Field(default_factory=list)


class HealthReport(_Strict):
    healthy: bool
    checks: dict[str, bool] = Field(default_factory=dict)
    message: str = ""
