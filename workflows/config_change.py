"""Changing a running agent's config: the request, the answer, and the validator's rules.

A person (``aiops config apply``) sends a whole config; a worker that saw a
new version stored by someone else sends only its number. Either way the
update's validator refuses at once what the agent cannot take, before
anything is stored or written to history.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.models import AgentConfig
from workflows.agent_state import AgentRunState, AgentState, describe_validation_error


class ReconfigureRequest(BaseModel):
    """Exactly one of: ``config`` (apply it as version N+1), ``rollback_to`` (store a copy of
    version K as N+1 and apply it), ``version`` (take this already stored version)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    config: AgentConfig | None = None
    rollback_to: int | None = Field(default=None, ge=1)
    version: int | None = Field(default=None, ge=1)
    author: str = ""
    comment: str = ""

    @model_validator(mode="after")
    def _one_of(self) -> ReconfigureRequest:
        given = [v for v in (self.config, self.rollback_to, self.version) if v is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of: a whole config, rollback_to, or a stored version")
        return self


class ConfigApplied(BaseModel):
    agent_id: str
    version: int
    previous_version: int
    changed: bool


def parse_request(payload: Any) -> ReconfigureRequest:
    """The request, or ``ValueError`` naming every problem with it."""
    if isinstance(payload, ReconfigureRequest):
        return payload
    try:
        return ReconfigureRequest.model_validate(payload)
    except ValidationError as err:
        raise ValueError(f"config refused: {describe_validation_error(err)}") from None


def refusal(state: AgentRunState, request: ReconfigureRequest) -> str | None:
    """Why the running agent cannot take this request, or None."""
    current = state.config
    if state.state in (AgentState.STOPPING, AgentState.STOPPED, AgentState.FAILED):
        return f"agent {current.id} is {state.state.value}; start it again with the new config instead"
    if state.stop_request is not None:
        return f"agent {current.id} is stopping"
    if request.config is not None:
        new = request.config
        problems = []
        if new.id != current.id:
            problems.append(f"id: the config is for agent {new.id!r}, not {current.id!r}")
        if new.type != current.type:
            problems.append(
                f"type: a running agent cannot change type ({current.type!r} to {new.type!r}); "
                "stop it and start a new agent"
            )
        return "config refused: " + "; ".join(problems) if problems else None
    return None
