"""The overflow of an agent (workflows/agent/overflow.py): events that arrived by signal while
its queue was full, kept by a workflow of their own and handed back through ``intake``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aiops.contracts.agent import MAX_EVENTS_PER_INTAKE, agent_workflow_id
from aiops.contracts.budgets import json_size

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


# Spilled and handed-back events travel in batches of at most this many bytes (an event may be
# 32,000 bytes, so 500 of them could pass Temporal's 2 MB payload limit).
OVERFLOW_BATCH_BYTES = 512 * 1024


def first_batch(events: list[dict[str, Any]], most: int) -> int:
    """How many of ``events``, from the first, make one batch: at most ``most`` and
    ``OVERFLOW_BATCH_BYTES`` together (always at least one)."""
    total = 0
    for n, event in enumerate(events[:most]):
        total += json_size(event)
        if n and total > OVERFLOW_BATCH_BYTES:
            return n
    return min(len(events), most)
