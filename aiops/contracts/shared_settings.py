"""Settings a worker's agents have alike, kept once per worker instead of once per agent.

An idle agent's config is mostly its approval, runtime and retry settings: about 7 KB of the
8.6 KB of pydantic objects a default config takes (the approval rules and command roles alone are
4.7 KB), and the agents of a fleet mostly have the same ones. Each run decodes its input anew, so
without this every cached agent keeps its own copy; with it, agents whose settings are equal (the
same JSON) hold one object, and only their ids, names and settings of their own stay apart
(docs/scale.md, "What an idle agent keeps").

Used by the agent workflow for its state's config (``workflows/agent/lifecycle.py`` at the start,
``workflows/agent/reconfigure.py`` on a change) and by the worker's live agent instances for the
config their hooks run with (``activities/agent_instances.py``): both copies are kept per cached
agent. Safe because no code changes a config's parts in place: a config change validates a whole
new config and replaces ``state.config`` (``workflows/agent/reconfigure.py``), and what leaves
the workflow is serialized.
Sharing changes which object holds equal values, never a value, so it is invisible to replay and
to every command. The table is bounded (cleared when full: sharing is an economy, never a
meaning).
"""

from __future__ import annotations

from pydantic import BaseModel

from aiops.contracts.config import AgentConfig

SHARED_PARTS = ("approval", "runtime", "retry")
MAX_SHARED = 512

_shared: dict[tuple[type[BaseModel], str], BaseModel] = {}


def share_settings(config: AgentConfig) -> AgentConfig:
    """``config`` with its approval, runtime and retry settings replaced by an equal object this
    worker already holds for another agent (the same object is returned, changed in place)."""
    for name in SHARED_PARTS:
        part = getattr(config, name)
        key = (type(part), part.model_dump_json())
        kept = _shared.get(key)
        if kept is None:
            if len(_shared) >= MAX_SHARED:
                _shared.clear()
            kept = _shared[key] = part
        # Straight into the model's fields: no validation to repeat, and the fields the config
        # was given (``model_fields_set``) stay as they were.
        config.__dict__[name] = kept
    return config
