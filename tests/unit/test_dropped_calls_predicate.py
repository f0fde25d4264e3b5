"""Which failures the client makes a call again for: the wire's, never the caller's own."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from aiops.dropped_calls import again_if_dropped, dropped_by_the_connection


def wrapped(cause: BaseException) -> WorkflowUpdateRPCTimeoutOrCancelledError:
    err = WorkflowUpdateRPCTimeoutOrCancelledError()
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("err", "repeat"),
    [
        (RPCError("operation was canceled", RPCStatusCode.CANCELLED, b""), True),
        (RPCError("transport error", RPCStatusCode.UNKNOWN, b""), True),
        (wrapped(RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")), True),
        # the caller's own cancellation, and its deadline: never again
        (wrapped(asyncio.CancelledError()), False),
        (wrapped(RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")), False),
        (RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b""), False),
        # how the SDK core reports the call's own rpc_timeout (tests/test_dropped_calls.py)
        (RPCError("Timeout expired", RPCStatusCode.CANCELLED, b""), False),
        (wrapped(RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")), False),
        # the server's answers: not the connection's doing
        (RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""), False),
        (RPCError("boom", RPCStatusCode.UNKNOWN, b""), False),
        (RPCError("bad request", RPCStatusCode.INVALID_ARGUMENT, b""), False),
        (ValueError("not an RPC error"), False),
    ],
)
def test_only_what_the_connection_dropped_is_made_again(err: BaseException, repeat: bool) -> None:
    assert dropped_by_the_connection(err) is repeat


class Call:
    """A call that fails with ``errors`` in turn, then answers; counts how often it was made."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.made = 0

    async def __call__(self) -> str:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


DROPPED = RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")


async def test_a_dropped_call_is_made_again_and_a_lasting_drop_reaches_the_caller() -> None:
    twice = Call(DROPPED, DROPPED)
    assert await again_if_dropped("describe", twice) == "answer"
    assert twice.made == 3

    always = Call(*[DROPPED] * 10)
    with pytest.raises(RPCError, match="operation was canceled"):
        await again_if_dropped("describe", always)
    assert always.made == 4

    refused = Call(RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""))
    with pytest.raises(RPCError, match="not found"):
        await again_if_dropped("describe", refused)
    assert refused.made == 1
