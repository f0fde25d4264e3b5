"""Workflow ids and the task queue: the names every starter must agree on.

Ids are derived from domain identity (agent id, event id), never from a run,
so two starters reach the same agent and a redelivered event reaches the same
action instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import re

DEFAULT_TASK_QUEUE = "aiops-agents"
AGENT_WORKFLOW_PREFIX = "agent-"
ACTION_WORKFLOW_PREFIX = "action-"

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def agent_workflow_id(agent_id: str) -> str:
    return f"{AGENT_WORKFLOW_PREFIX}{agent_id}"


def action_workflow_id(agent_id: str, event_id: str) -> str:
    """``action-<agent>:<event>``: agent ids never contain ``:``, so no two pairs collide.

    An event id with characters unsafe in a workflow id, or a very long one, is
    kept readable and made unique with a digest of the original.
    """
    safe = _SAFE.sub("_", event_id)
    if safe != event_id or len(safe) > 100:
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:16]
        safe = f"{safe[:60]}-{digest}"
    return f"{ACTION_WORKFLOW_PREFIX}{agent_id}:{safe}"
