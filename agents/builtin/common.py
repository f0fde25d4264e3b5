"""Small pieces the built-in agents share: settings checks and the JSON files they keep per action.

Markers and plans are written atomically (a temporary file, then a rename), so a worker killed
mid-write leaves either the old file or the new one, never half of one: that is what lets a
retried execute trust them as its idempotency record.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiops.contracts.models import RiskLevel


def number_problems(settings: Mapping[str, Any], bounds: Iterable[tuple[str, float, float]]) -> list[str]:
    """Each ``(name, low, high)`` setting, when given, must be a number within the bounds."""
    problems = []
    for name, low, high in bounds:
        value = settings.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"settings.{name} must be a number")
        elif not low <= value <= high:
            problems.append(f"settings.{name} must be between {low} and {high} (got {value})")
    return problems


def risk_problems(settings: Mapping[str, Any]) -> list[str]:
    risk = settings.get("risk_level")
    levels = [r.value for r in RiskLevel]
    if risk is not None and risk not in levels:
        return [f"settings.risk_level must be one of {levels} (got {risk!r})"]
    return []


def same_path(a: str, b: str) -> bool:
    """Lexically, no I/O: whether two paths name the same file."""
    return os.path.normpath(a) == os.path.normpath(b)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def write_json(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    partial.write_text(json.dumps(body, default=str))
    os.replace(partial, path)
