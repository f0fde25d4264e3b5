"""What changed between two configs, setting by setting (``aiops config diff``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from aiops.contracts.config import AgentConfig

_MISSING = "<absent>"


class ConfigChange(BaseModel):
    path: str
    old: Any = None
    new: Any = None


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}[{index}]", out)
    else:
        out[prefix] = value


def diff_configs(old: AgentConfig, new: AgentConfig) -> list[ConfigChange]:
    """Changed, added and removed settings in path order; the version number is not a setting."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(old.model_dump(mode="json", exclude={"version"}), "", before)
    _flatten(new.model_dump(mode="json", exclude={"version"}), "", after)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path, _MISSING), after.get(path, _MISSING)
        if a != b:
            changes.append(ConfigChange(path=path, old=a, new=b))
    return changes


def same_settings(a: AgentConfig, b: AgentConfig) -> bool:
    """Equal apart from the version number."""
    return a.model_copy(update={"version": 0}) == b.model_copy(update={"version": 0})


def same_but_version(a: AgentConfig, b: AgentConfig) -> bool:
    """The same JSON apart from the version number: stricter than ``same_settings``, whose ``==``
    takes ``1``, ``1.0`` and ``True`` in a free-form ``settings`` dict for one another. An agent
    keeps its own config object instead of the store's copy only when the two would serialize
    alike (``workflows/agent/lifecycle.py``, ``adopt_stored``)."""
    return _json(a) == _json(b)


def _json(config: AgentConfig) -> str:
    return json.dumps(config.model_dump(mode="json", exclude={"version"}), sort_keys=True)
