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
        # the server's answers: not the connection's doing
        (RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""), False),
        (RPCError("boom", RPCStatusCode.UNKNOWN, b""), False),
        (RPCError("bad request", RPCStatusCode.INVALID_ARGUMENT, b""), False),
        (ValueError("not an RPC error"), False),
    ],
)
def test_only_what_the_connection_dropped_is_made_again(err: BaseException, repeat: bool) -> None:
    assert dropped_by_the_connection(err) is repeat


async def test_a_dropped_call_is_made_again_and_a_lasting_drop_reaches_the_caller() -> None:
    calls = 0

    async def dropped_twice() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")
        return "answer"

    assert await again_if_dropped("describe", dropped_twice) == "answer"
    assert calls == 3

    async def always_dropped() -> str:
        nonlocal calls
        calls += 1
        raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")

    calls = 0
    with pytest.raises(RPCError, match="operation was canceled"):
        await again_if_dropped("describe", always_dropped)
    assert calls == 4

    async def refused() -> str:
        nonlocal calls
        calls += 1
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    calls = 0
    with pytest.raises(RPCError, match="not found"):
        await again_if_dropped("describe", refused)
    assert calls == 1
