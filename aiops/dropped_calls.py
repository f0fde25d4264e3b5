"""Calls the connection dropped are made again, when making them again cannot do anything twice.

The Temporal frontend closes every client connection after ``frontend.keepAliveMaxConnectionAge``
(five minutes by default), with a grace period for the calls still open on it. A call that is
still open when the grace ends, or that the client's HTTP/2 stack routes onto the closing
connection, fails with gRPC ``CANCELLED`` ("operation was canceled") although nobody cancelled
it. Workers share their client's connection and always hold long polls open on it, so in a
long-running process (the gateway, the API, the console, a worker's own client calls) any call
may meet one of these once every few minutes. The SDK makes long polls again on its own; this
interceptor does the same for the calls that are safe to repeat:

- reads (describe, query, count, each page of a list): they change nothing;
- updates to a running workflow: the update id is fixed before the first attempt, and the
  server takes an update id once per run, so a repeat returns the first attempt's outcome.

Signals and plain starts are not repeated: the SDK gives each attempt a new request id, so the
server could not tell a repeat from a second call. Update-with-start is not repeated either:
the SDK reports its start through callbacks on the input that are not public API. The caller
of those gets the error and decides (the client's event intake sends again with backoff). A call
cancelled by its caller (an ``asyncio`` cancellation or a deadline) is never repeated.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import (
    CountWorkflowsInput,
    DescribeWorkflowInput,
    Interceptor,
    ListWorkflowsInput,
    OutboundInterceptor,
    QueryWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowExecutionAsyncIterator,
    WorkflowExecutionCount,
    WorkflowExecutionDescription,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

ATTEMPTS = 4
"""The first call and up to three repeats: one connection closes at a time, so a second repeat
is already rare; more would only delay a caller whose server is really going away."""
FIRST_WAIT_SECONDS = 0.05
LONGEST_WAIT_SECONDS = 1.0


# What the SDK core reports when the call's own deadline (its ``rpc_timeout``) passes: ``CANCELLED``
# with this message (tonic's timeout), not ``DEADLINE_EXCEEDED``. The caller's deadline, not a drop.
CALL_TIMED_OUT = "Timeout expired"


def dropped_by_the_connection(err: BaseException) -> bool:
    """A ``CANCELLED`` that came from the wire, not from the caller (the SDK wraps an update's
    in ``WorkflowUpdateRPCTimeoutOrCancelledError``, with the caller's own cancellation as an
    ``asyncio.CancelledError`` cause instead, and the call's deadline as ``CANCELLED`` "Timeout
    expired", which is not a drop either: made again, an intake update waiting for a busy agent
    took four times its timeout), or the SDK's "transport error" (a write to a connection the
    server had closed) once the SDK's own repeats of it are spent."""
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        err = err.__cause__ if err.__cause__ is not None else err
    if not isinstance(err, RPCError):
        return False
    return (err.status == RPCStatusCode.CANCELLED and err.message != CALL_TIMED_OUT) or (
        err.status == RPCStatusCode.UNKNOWN and err.message == "transport error"
    )


async def again_if_dropped(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call``, made again (after a short random wait) while the connection drops it; each
    repeat is logged, so an operator sees how often the connection is rotated under a call."""

    def note(state: RetryCallState) -> None:
        outcome = state.outcome
        err = outcome.exception() if outcome is not None else None
        log.info("%s dropped by the connection (%s); making it again", what, err)

    retrying = AsyncRetrying(
        retry=retry_if_exception(dropped_by_the_connection),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_random_exponential(multiplier=FIRST_WAIT_SECONDS, max=LONGEST_WAIT_SECONDS),
        before_sleep=note,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last attempt's error")


class RepeatDroppedCalls(Interceptor):
    """The client interceptor ``aiops.connection.connect`` always installs (see the module's
    docstring for which calls are repeated and why the others are not)."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Outbound(next)


class _Outbound(OutboundInterceptor):
    async def describe_workflow(self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        return await again_if_dropped("describe", lambda: self.next.describe_workflow(input))

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        return await again_if_dropped(f"query {input.query}", lambda: self.next.query_workflow(input))

    def list_workflows(self, input: ListWorkflowsInput) -> WorkflowExecutionAsyncIterator:
        # Each page is fetched by the iterator itself; a page is asked for again, which is safe
        # because the iterator moves on only after an answer.
        pages = self.next.list_workflows(input)
        fetch = pages.fetch_next_page

        async def fetch_again_if_dropped(*, page_size: int | None = None) -> None:
            await again_if_dropped("list", lambda: fetch(page_size=page_size))

        pages.fetch_next_page = fetch_again_if_dropped  # type: ignore[method-assign]
        return pages

    async def count_workflows(self, input: CountWorkflowsInput) -> WorkflowExecutionCount:
        return await again_if_dropped("count", lambda: self.next.count_workflows(input))

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        fixed = with_update_id(input)
        what = f"update {input.update}"
        return await again_if_dropped(what, lambda: self.next.start_workflow_update(fixed))


def with_update_id(update: StartWorkflowUpdateInput) -> StartWorkflowUpdateInput:
    """The update with an id chosen once, so every attempt carries the same one."""
    if update.update_id:
        return update
    return dataclasses.replace(update, update_id=str(uuid.uuid4()))
