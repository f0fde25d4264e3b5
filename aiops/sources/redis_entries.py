"""A stream entry turned into an event, or refused with a one-line reason for the dead-letter stream.

An entry carries the event in its ``event`` field as JSON, exactly what ``POST /v1/events`` takes
for one event (an ``id`` is required, so a redelivered entry is a duplicate the agent drops). Other
fields are allowed (a producer's own metadata) and ignored, within the bounds: at most
``max_fields`` fields and ``max_entry_bytes`` bytes of names and values together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiops.contracts.models import SystemEvent
from aiops.gateway.intake import EventRefused, parse_event
from aiops.sources.redis_settings import RedisSourceSettings

EVENT_FIELD = b"event"
DEAD_VALUE_BYTES = 1024  # each value copied into a dead letter, at most (an oversized entry is cut)


@dataclass(frozen=True, eq=False)  # one entry read once is one object: hashed by identity
class Entry:
    stream: str
    id: str
    fields: dict[bytes, bytes]


def read_entry(entry: Entry, settings: RedisSourceSettings) -> tuple[SystemEvent, int]:
    """The entry's event and its JSON size, or ``EventRefused`` saying why it cannot be delivered."""
    fields = entry.fields
    if len(fields) > settings.max_fields:
        raise EventRefused(f"{len(fields)} fields, over the limit of {settings.max_fields}")
    size = sum(len(k) + len(v) for k, v in fields.items())
    if size > settings.max_entry_bytes:
        raise EventRefused(f"the entry is {size} bytes, over the limit of {settings.max_entry_bytes}")
    raw = fields.get(EVENT_FIELD)
    if raw is None:
        raise EventRefused("missing field 'event' (the event as JSON, as POST /v1/events takes it)")
    try:
        document = json.loads(raw.decode("utf-8"))  # json.loads would guess UTF-16 or 32 from bytes
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise EventRefused(f"the event is not JSON: {err.msg} ({where})") from None
    except (UnicodeDecodeError, RecursionError):
        raise EventRefused("the event is not JSON: not UTF-8 text, or nested too deeply") from None
    return parse_event(document, "the event")


def dead_letter_fields(entry: Entry, reason: str, settings: RedisSourceSettings) -> dict[bytes, bytes]:
    """What the dead-letter stream keeps of a refused entry: where it was, why, and its fields (cut)."""
    kept: dict[bytes, bytes] = {
        b"stream": entry.stream.encode(),
        b"entry_id": entry.id.encode(),
        b"reason": reason[:1000].encode(),
        b"source": settings.source_name.encode(),
    }
    cut = False
    for index, (name, value) in enumerate(entry.fields.items()):
        if index >= settings.max_fields:
            cut = True
            break
        key = b"field:" + name[:200]
        if key in kept:
            continue
        cut = cut or len(value) > DEAD_VALUE_BYTES or len(name) > 200
        kept[key] = value[:DEAD_VALUE_BYTES]
    if cut:
        kept[b"truncated"] = b"1"
    return kept
