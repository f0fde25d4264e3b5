"""Payloads the agent decodes itself: the signals people type by hand.

A handler whose parameter is ``RawValue`` gets the payload as it came, undecoded. The SDK would
otherwise drop a signal it cannot decode (unknown encoding, invalid JSON) with a traceback in
the worker log and nothing anywhere else; decoded here, such a payload is refused, counted and
audited like any other malformed one.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError
    from pydantic_core import from_json

    from aiops.contracts.errors import AiopsError, describe_validation_error

# What a handler receives for a signal sent without any argument: decodes to None.
NO_PAYLOAD = RawValue(Payload(metadata={"encoding": b"binary/null"}))
JSON_PLAIN = b"json/plain"
# An undecodable payload's reason quotes the converter's message: kept short.
MAX_REASON = 300


class UndecodablePayload(AiopsError):
    """A signal's payload that no converter of this worker can read; the message says why."""


def decoded(raw: RawValue) -> Any:
    """The payload as plain data (what an ``Any`` parameter would have received), or
    ``UndecodablePayload`` naming the problem.

    Plain JSON (what every client sends) is parsed here directly, as the converter would parse it
    for an ``Any`` parameter: a storm's workflow task may take thousands of signals at once, and
    the converter's dispatch cost ten times the parse (about 15 of the 2,000 microseconds per
    signal the SDK's deadlock detector allows 10,000 signals). Anything else, and a parse error
    (for its message), goes the converter's way."""
    payload = raw.payload
    if payload.metadata.get("encoding") == JSON_PLAIN:
        try:
            return from_json(payload.data)
        except ValueError:
            pass  # said below, as the converter says it
    try:
        return workflow.payload_converter().from_payload(raw.payload)
    except ValidationError as err:  # invalid JSON: said without echoing the bytes
        reason = describe_validation_error(err).removeprefix("event: ")
    except Exception as err:  # an unknown encoding, a codec's error: refused alike
        reason = f"{type(err).__name__}: {err}"
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON] + "..."
    raise UndecodablePayload(f"undecodable payload ({reason})")
