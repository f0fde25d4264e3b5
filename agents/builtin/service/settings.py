"""The service agent's settings: how to reach supervisord, which programs to watch, how far to go."""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, field_validator, model_validator

from agents.builtin.common import OwnFolder
from agents.settings import AgentSettings, SettingProblems, distinct
from aiops.contracts.models import RiskLevel

MAX_WINDOW = 7 * 24 * 3600
PROGRAM_NAME = re.compile(r"\A[A-Za-z0-9_.:-]{1,128}\Z")


def _url_problem(url: str, unix: bool) -> str | None:
    if not url or len(url) > 2048 or any(c in url for c in "\0\r\n "):
        return "must be a URL string without spaces or control characters"
    if unix and url.startswith("unix://"):
        path = url.removeprefix("unix://")
        if not path.startswith("/") or os.path.normpath(path) != path:
            return "a unix socket URL is unix:// and an absolute path, e.g. unix:///run/supervisor.sock"
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        kinds = (
            "unix:///path/to/supervisor.sock or http://host:port/RPC2" if unix else "http(s)://host:port/path"
        )
        return f"must look like {kinds}"
    if parsed.username or parsed.password:
        return "put credentials in username / password (a secret reference), not in the URL"
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "the port is not a number between 0 and 65535"
    return None


def _checked(unix: bool) -> AfterValidator:
    def check(url: str) -> str:
        problem = _url_problem(url, unix)
        if problem:
            raise ValueError(problem)
        return url

    return AfterValidator(check)


def _program_name(name: str) -> str:
    if not PROGRAM_NAME.match(name):
        raise ValueError(
            "must be a supervisor program name (letters, digits, _ . : -, at most 128; "
            "'group:program' for a program in a group)"
        )
    return name


class SupervisorSettings(AgentSettings):
    """How to reach supervisord's XML-RPC interface."""

    url: Annotated[str, Field(strict=True), _checked(unix=True)] = "unix:///var/run/supervisor.sock"
    username: str | None = Field(default=None, strict=True, min_length=1, max_length=200)
    password: str | None = Field(
        default=None, strict=True, description='a secret reference such as "env:SUPERVISOR_PASSWORD"'
    )
    timeout_seconds: float = Field(default=10.0, strict=True, ge=0.1, le=300)

    @model_validator(mode="after")
    def _user_with_password(self) -> SupervisorSettings:
        if self.password is not None and self.username is None:
            raise SettingProblems([(("username",), "is required with a password")])
        return self


class Service(AgentSettings):
    """A supervisor program to watch, and (optionally) its HTTP health endpoint."""

    name: Annotated[str, Field(strict=True), AfterValidator(_program_name)] = Field(
        description="the supervisor program name ('group:program' for a program in a group)"
    )
    health_url: Annotated[str, Field(strict=True), _checked(unix=False)] | None = None
    expect_status: int = Field(default=200, strict=True, ge=100, le=599)
    health_timeout_seconds: float = Field(default=2.0, strict=True, ge=0.1, le=60)
    grace_seconds: float = Field(default=10.0, strict=True, ge=0, le=3600)


class ServiceSettings(AgentSettings):
    """See docs/agents/service.md for each setting."""

    supervisor: SupervisorSettings = SupervisorSettings()
    services: Annotated[list[Service], distinct("lists a program twice", key=lambda s: s.name)] = Field(
        min_length=1,
        max_length=100,
        description='supervisor programs to watch, e.g. [{"name": "web", '
        '"health_url": "http://127.0.0.1:8080/healthz"}]',
    )
    max_restarts: int = Field(default=3, strict=True, ge=0, le=100)
    restart_window_seconds: float = Field(default=3600.0, strict=True, ge=1, le=MAX_WINDOW)
    verify_timeout_seconds: float = Field(default=30.0, strict=True, ge=1, le=600)
    restart_stopped: StrictBool = False
    risk_when_down: RiskLevel = RiskLevel.LOW
    risk_when_unhealthy: RiskLevel = RiskLevel.MEDIUM
    escalation_risk: RiskLevel = RiskLevel.HIGH
    state_dir: OwnFolder = "/var/lib/aiops/service"

    @field_validator("escalation_risk")
    @classmethod
    def _escalation_needs_a_person(cls, risk: RiskLevel) -> RiskLevel:
        if risk not in (RiskLevel.HIGH, RiskLevel.CRITICAL):
            raise ValueError("must be one of high, critical (the policy sends those to a person)")
        return risk

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)
