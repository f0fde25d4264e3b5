"""The postgres agent's settings: which server, which checks, their thresholds, who is off limits."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictBool, field_validator

from agents.builtin.common import OwnFolder
from agents.builtin.postgres.checks import CHECKS, DEFAULT_ALERT_NAMES, DEFAULT_RISK, Check
from agents.settings import AgentSettings
from aiops.contracts.models import RiskLevel
from aiops.contracts.secret_refs import is_reference


def dsn_reference(value: str) -> str:
    """A secret reference (checked again once resolved), or the PostgreSQL URL it resolved to."""
    if is_reference(value) or value.startswith(("postgres://", "postgresql://")):
        return value
    # never echo the value: it is (or holds) a credential
    raise ValueError("must resolve to a PostgreSQL URL (postgresql://user@host:port/db)")


Seconds = Annotated[float, Field(strict=True, ge=0)]
Names = list[Annotated[str, Field(strict=True)]]


class RiskSettings(AgentSettings):
    """A risk level per check, where the default one does not fit."""

    long_queries: RiskLevel | None = None
    idle_in_transaction: RiskLevel | None = None
    lock_chains: RiskLevel | None = None
    bloat: RiskLevel | None = None
    connections: RiskLevel | None = None


class PostgresSettings(AgentSettings):
    """See docs/agents/postgres.md for each setting."""

    dsn_secret: Annotated[str, Field(strict=True), AfterValidator(dsn_reference)] = Field(
        description='a reference to the PostgreSQL URL, e.g. "env:PG_DSN"'
    )
    checks: list[Check] = Field(
        default_factory=lambda: list(CHECKS), description="the checks to run; empty means all"
    )
    databases: Names = Field(default_factory=list, description="empty: the DSN's database; '*': all")
    long_query_action: Literal["cancel", "terminate"] = "cancel"
    protected_users: Names = Field(default_factory=list)
    protected_applications: Names = Field(default_factory=list)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    alert_names: dict[str, Check] = Field(
        default_factory=lambda: dict(DEFAULT_ALERT_NAMES), description="alert names to checks"
    )
    instance: Annotated[str, Field(strict=True)] | None = Field(
        default=None, description="the alerts' instance label this agent answers"
    )
    vacuum_analyze: StrictBool = True
    state_dir: OwnFolder | None = Field(
        default=None, description="the action ledger; default <temp dir>/aiops-postgres/<agent id>"
    )
    long_query_seconds: Seconds = 300.0
    idle_in_transaction_seconds: Seconds = 300.0
    lock_wait_seconds: Seconds = 30.0
    min_dead_tuples: int = Field(default=10000, strict=True, ge=0)
    dead_tuple_ratio: float = Field(default=0.2, strict=True, ge=0)
    connection_saturation_ratio: float = Field(default=0.9, strict=True, ge=0, le=1)
    idle_session_seconds: Seconds = 600.0
    max_sessions_per_action: int = Field(default=10, strict=True, ge=1, le=1000)
    statement_timeout_seconds: float = Field(default=10.0, strict=True, ge=0.1, le=3600)
    connect_timeout_seconds: float = Field(default=10.0, strict=True, ge=0.1, le=600)
    vacuum_timeout_seconds: float = Field(default=900.0, strict=True, ge=1, le=86400)
    verify_timeout_seconds: float = Field(default=10.0, strict=True, ge=0, le=600)

    @field_validator("checks")
    @classmethod
    def _all_when_empty(cls, checks: list[Check]) -> list[Check]:
        return checks or list(CHECKS)

    @field_validator("alert_names")
    @classmethod
    def _defaults_when_empty(cls, names: dict[str, Check]) -> dict[str, Check]:
        return names or dict(DEFAULT_ALERT_NAMES)

    def risk_of(self, check: Check) -> RiskLevel:
        configured: RiskLevel | None = getattr(self.risk, check)
        return configured or DEFAULT_RISK[check]

    def where(self) -> str:
        """The server, without credentials: host:port/database."""
        parts = urlsplit(self.dsn_secret)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"

    def ledger_dir(self, agent_id: str) -> str:
        return self.state_dir or os.path.join(tempfile.gettempdir(), "aiops-postgres", agent_id)
