"""An event from a decoded JSON value, checked the same way wherever events arrive as JSON (the
CLI's files, the gateway's bodies): each caller raises its own error and words its own list of
validation problems, the checks and their messages are one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from aiops.contracts.models import SystemEvent


def event_from_json(
    item: Any,
    where: str,
    refuse: Callable[[str], Exception],
    describe: Callable[[ValidationError], str],
) -> SystemEvent:
    """The event in ``item``, or ``refuse(message)`` naming ``where`` and what is wrong. The ``id``
    is required here although the model would default it: a resend is recognised by its id."""
    if not isinstance(item, dict):
        raise refuse(f"{where}: an event must be a JSON object, got {type(item).__name__}")
    if "id" not in item:
        raise refuse(f"{where}: id: field required (every event needs an id so a resend is deduplicated)")
    try:
        return SystemEvent.model_validate(item)
    except ValidationError as err:
        raise refuse(f"{where}: invalid event: {describe(err)}") from None
