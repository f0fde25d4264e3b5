"""The bodies the REST API takes and gives that the project's contracts do not already name.

Everything else (an agent's status, an action's record, an audit row, a config version) is
answered with the contract model itself, so the OpenAPI document describes exactly what the
workflows and the database produce.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiops.contracts.action import ActionRecord
from aiops.contracts.config import AgentConfig
from aiops.contracts.operator_message import MAX_CREDENTIAL, MAX_TEXT


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ErrorBody(BaseModel):
    """Every refusal and failure: one line that says what (and what to do)."""

    error: str


def error_responses(meanings: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A router's ``responses``: each status code with ``ErrorBody`` and what it means there, so
    the OpenAPI document says why each refusal happens, route module by route module."""
    return {status: {"model": ErrorBody, "description": text} for status, text in meanings.items()}


class CommandBody(_Body):
    """Pause, resume or reset the breaker, relayed to the agent as the caller's command.
    ``credential``: the caller's signed command token (``aiops agents token``), which a
    production config requires; the API never signs on anyone's behalf."""

    credential: str | None = Field(default=None, max_length=MAX_CREDENTIAL)
    reason: str = Field(default="", max_length=MAX_TEXT)


class StopBody(CommandBody):
    drain: bool = True


class StartBody(_Body):
    config: AgentConfig


class Started(BaseModel):
    agent_id: str
    workflow_id: str


class ApplyBody(_Body):
    """A whole new config; ``credential`` signs exactly this change (verb ``reconfigure``)."""

    config: AgentConfig
    comment: str = Field(default="", max_length=MAX_TEXT)
    credential: str | None = Field(default=None, max_length=MAX_CREDENTIAL)


class RollbackBody(_Body):
    version: int = Field(ge=1, le=2_000_000_000)
    comment: str = Field(default="", max_length=MAX_TEXT)
    credential: str | None = Field(default=None, max_length=MAX_CREDENTIAL)


class DecisionBody(_Body):
    """A decision the person signed (``aiops approvals token``, or an identity provider's decision
    token): the workflow verifies it; the API only relays it."""

    approve: bool
    credential: str = Field(min_length=1, max_length=MAX_CREDENTIAL)
    comment: str = Field(default="", max_length=MAX_TEXT)
    plan_digest: str | None = Field(default=None, max_length=128)


class InboxItem(BaseModel):
    action_id: str
    record: ActionRecord


class Me(BaseModel):
    """The person a call names: ``via`` says how they proved it (``oidc`` or ``token``)."""

    name: str
    roles: list[str]
    via: str
    issuer: str | None = None
    token_id: str | None = None
