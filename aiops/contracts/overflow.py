"""The overflow of an agent (workflows/agent/overflow.py): events that arrived by signal while
its queue was full, kept by a workflow of their own and handed back through ``intake``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aiops.contracts.agent import MAX_EVENTS_PER_INTAKE, agent_workflow_id

OVERFLOW_WORKFLOW_TYPE = "AgentOverflowWorkflow"
HOLD_EVENTS = "hold_events"  # signal to the overflow: list of event dicts to keep and hand back
OVERFLOW_HELD = "held"  # query of the overflow: how many events it holds


def overflow_workflow_id(agent_id: str) -> str:
    """``agent-<id>:overflow``: one per agent; a ':' no agent id has, so it names no agent."""
    return f"{agent_workflow_id(agent_id)}:overflow"


class SpillRequest(BaseModel):
    agent_id: str
    task_queue: str
    events: list[dict[str, Any]]


class OverflowInput(BaseModel):
    agent_id: str
    held: list[dict[str, Any]] = Field(default_factory=list)  # carried by continue-as-new
    handed_back: int = 0


class HandBackRequest(BaseModel):
    agent_id: str
    events: list[dict[str, Any]] = Field(max_length=MAX_EVENTS_PER_INTAKE)


class HandBackResult(BaseModel):
    """What the agent's ``intake`` update did with a batch: ``kept`` are the ids to hold again."""

    taken: bool
    gone: bool = False  # the agent takes no events (stopped, failed, not found)
    room: int = 0  # events that would fit now, when refused
    kept: list[str] = Field(default_factory=list)
    reason: str = ""
