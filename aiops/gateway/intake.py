"""One JSON event checked the same way wherever it enters: ``/v1/events`` and the Redis source.

Shared so a payload the gateway refuses with a reason is refused by every other entry point with
the same reason: not an object, no ``id`` (a resend could not be dropped), not a ``SystemEvent``,
or over the agents' size limit.
"""

from __future__ import annotations

from typing import Any

from aiops.client.event_input import event_from_json
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import SystemEvent
from aiops.gateway.alertmanager import MAX_EVENT_BYTES, event_size
from aiops.gateway.config import describe


class EventRefused(AiopsError):
    """An event payload no agent may receive; the message is one line naming what is wrong."""


def parse_event(item: Any, where: str) -> tuple[SystemEvent, int]:
    """The event in ``item`` (a decoded JSON value) and its size in JSON bytes, or ``EventRefused``."""
    event = event_from_json(item, where, EventRefused, describe)
    size = event_size(event)
    if size > MAX_EVENT_BYTES:
        raise EventRefused(f"{where}: {size} bytes, over the agents' {MAX_EVENT_BYTES}-byte limit")
    return event, size
