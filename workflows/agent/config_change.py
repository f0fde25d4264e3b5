"""Changing a running agent's config: the validator's rules (the request is in ``agent_contract``).

A person (``aiops config apply``) sends a whole config; a worker that saw a
new version stored by someone else sends only its number. Either way the
update's validator refuses at once what the agent cannot take, before
anything is stored or written to history.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from aiops.contracts.agent import AgentRunState, AgentState, ReconfigureRequest
from aiops.contracts.errors import describe_validation_error


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
