"""Letting an eagerly started action's first workflow task reach the server before its agent's.

The agent starts an action in a local activity (``activities/action_start.py``) with eager start:
the server hands the action's first workflow task back in the start's answer, and this process
runs it while the agent's task finishes. Both tasks then complete within a millisecond or two of
each other, and the agent's always left first: the action's completion, whose answer dispatches
execute, came second to the server. Sending the action's first saved 1.5 to 2 ms on bare workflows
and about 0.1 of the event → execute ratio to raw (docs/scale.md, "Latency").

So the start's local activity answers only once the action's first activation has been computed
in this process (at most ``FIRST_ACTIVATION_WAIT``); the agent's task then completes after the
action's. "Computed" is before the SDK encodes and sends the completion, so this is the order in
practice, not a guarantee: the agent's own way from the start's answer to its completion (the
local activity's result to the SDK core, a new activation, computing it) is much longer than the
action's from computed to sent. What the wait changes is when the agent's task completes, by the
time the action's first activation takes (a few ms): no command, no result and no history of
either workflow. Where the start was not eager (the type's worker is elsewhere or had no free
slot) there is nothing to wait for and the start answers at once.

``FirstActivations`` is the meeting point, one per worker process: the start says which action
it waits for, and the workflow runner (``aiops/runtime/activation_memory.py``) has it watch the
runs it creates that a start waits for (``tell_after_first_activation``). Activations are
computed in the SDK's worker threads, so the news reaches the start through the event loop it
waits on.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.worker import WorkflowInstance

FIRST_ACTIVATION_WAIT = timedelta(milliseconds=50)
"""The longest an eagerly started action's first activation holds its start's answer: some 20
times what it takes on a loaded 2-core machine; past it the agent's task goes on regardless."""


class FirstActivations:
    """Which action starts wait for their action's first activation, and telling them."""

    def __init__(self, wait: timedelta = FIRST_ACTIVATION_WAIT) -> None:
        self.wait = wait
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}

    def expect(self, workflow_id: str) -> asyncio.Future[None]:
        """Called by the start before it asks the server: the future is done once the run of
        ``workflow_id`` has computed its first activation here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting[workflow_id] = (loop, future)
        return future

    def awaited(self, workflow_id: str) -> bool:
        """Whether a start waits for this workflow's first activation (asked when its run is
        created here, so only those runs are watched)."""
        return workflow_id in self._waiting

    def computed(self, workflow_id: str) -> None:
        """Called by the runner, from the activation's thread, after the first activation."""
        waiting = self._waiting.get(workflow_id)
        if waiting is None:
            return
        loop, future = waiting
        try:
            loop.call_soon_threadsafe(_settle, future)
        except RuntimeError:  # the loop closed (the worker is shutting down): nobody waits
            pass

    def tell_after_first_activation(self, instance: WorkflowInstance, workflow_id: str) -> None:
        """Called by the runner for a run it creates that a start waits for: wraps this one
        instance's ``activate`` for its first call only (an attribute of the instance, dropped
        after that call, so later activations run the SDK's method directly), then says
        ``computed``. An instance attribute rather than a wrapper class: a wrapper subclassing the
        SDK's ``WorkflowInstance`` would stop being instantiable, failing workflow tasks, if a
        minor release added an abstract method; this way, if the SDK stopped calling
        ``activate``, the start would only wait its bound."""
        activate = instance.activate

        def activate_then_tell(act: Any) -> Any:
            try:
                return activate(act)
            finally:
                vars(instance).pop("activate", None)
                self.computed(workflow_id)

        setattr(instance, "activate", activate_then_tell)  # noqa: B010 (mypy refuses assigning a method)

    async def computed_in_time(self, future: asyncio.Future[None]) -> bool:
        """The start's wait, for an eager start: until the first activation was computed here or
        ``wait`` passed. True if it was computed."""
        if not future.done():
            await asyncio.wait([future], timeout=self.wait.total_seconds())
        return future.done()

    def release(self, workflow_id: str, future: asyncio.Future[None]) -> None:
        """The start is done with ``workflow_id`` (answered, or failed): stop watching it, unless
        another start watches it now."""
        waiting = self._waiting.get(workflow_id)
        if waiting is not None and waiting[1] is future:
            del self._waiting[workflow_id]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
