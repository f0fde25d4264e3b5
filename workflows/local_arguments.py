"""A local activity's arguments, as small as they can be sent: the SDK core keeps them for the run.

A default agent config's start call was 3.2 KB of JSON and is 0.3 KB without its defaults.

The core keeps a local activity's arguments for the whole run (its state machine is never
dropped), so whatever a workflow passes to one stays in every cached run's memory until the run
ends or is evicted. An agent calls local activities on every start and for every action it
starts, so a call is sent without the fields at their defaults: the activity reads the same call.
The arguments are not in the history (the marker records the result), so replay is unchanged.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

JSON_PLAIN = b"json/plain"  # the SDK's encoding name for JSON

M = TypeVar("M", bound=BaseModel)


def compact(call: M) -> RawValue | M:
    """``call`` as JSON without the fields at their defaults, which the activity's pydantic model
    reads back as the same call. Sent whole when the short form does not read back as the same
    call (a validator that depends on what was sent)."""
    data = call.model_dump_json(exclude_defaults=True)
    if type(call).model_validate_json(data) != call:
        return call
    return RawValue(Payload(metadata={"encoding": JSON_PLAIN}, data=data.encode()))
