"""Copying the fields two models share by name, so a mapping from one to the other lists only
what it renames or computes.

A status built from a run's state, a call built from a workflow's input, a score built from a
replay: most of their fields are the source's fields under the same names. Writing each as
``name=source.name`` hides the few that differ among the many that do not; ``same_named`` names
the copied ones once, and the target model still validates every value it receives.
"""

from __future__ import annotations

from typing import Any


def same_named(source: object, *names: str) -> dict[str, Any]:
    """``{name: source.name}`` for each name: keyword arguments for a model with the same fields.

    A name ``source`` lacks raises ``AttributeError`` where the mapping is built, not later.
    """
    return {name: getattr(source, name) for name in names}
