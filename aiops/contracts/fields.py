"""Small helpers over models and nested values: copying the fields two models share by name,
and mapping every leaf of a nested dict/list value.

A status built from a run's state, a call built from a workflow's input, a score built from a
replay: most of their fields are the source's fields under the same names. Writing each as
``name=source.name`` hides the few that differ among the many that do not; ``same_named`` names
the copied ones once, and the target model still validates every value it receives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def same_named(source: object, *names: str) -> dict[str, Any]:
    """``{name: source.name}`` for each name: keyword arguments for a model with the same fields.

    A name ``source`` lacks raises ``AttributeError`` where the mapping is built, not later.
    """
    return {name: getattr(source, name) for name in names}


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with ``leaf`` applied to everything inside its dicts, lists and tuples (a tuple
    becomes a list, as in JSON): how an audit row cuts its texts and the CLI makes its JSON."""
    if isinstance(value, dict):
        return {k: map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_leaves(v, leaf) for v in value]
    return leaf(value)
