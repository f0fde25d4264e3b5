"""The raw side of the benchmark's comparisons: workflows that do what the agent does, minus the agent.

Each is sandboxed like the framework's own workflows and reports what it handled through the
same counter file as the benchmark agents (outside the sandbox, not on replay):

* ``RawDecider``: takes events by an ``intake`` update (as the agent's facade delivers them),
  queues them, and decides each batch of up to ``batch_size`` with one local activity.
* ``RawFleetSink``: an idle no-op workflow that counts events, by ``intake`` update or ``ping``
  signal, and stays open (like an agent).
* ``BareWorkflow``: does nothing but wait; counts its first workflow task (the start benchmark).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench.observer_agent import count_decision


def _counted(n: int = 1) -> None:
    if not workflow.unsafe.is_replaying():
        with workflow.unsafe.sandbox_unrestricted():
            count_decision(n)


@activity.defn
async def raw_decide(events: list[Any]) -> int:
    """The raw decision: one call per batch, counting the batch's events."""
    count_decision(len(events))
    return len(events)


@workflow.defn
class RawDecider:
    """Events in by update, out in batches of ``batch_size``: one local activity per batch."""

    def __init__(self) -> None:
        self.queue: list[Any] = []
        self.decided = 0

    @workflow.run
    async def run(self, batch_size: int) -> int:
        while True:
            await workflow.wait_condition(lambda: bool(self.queue))
            batch, self.queue = self.queue[:batch_size], self.queue[batch_size:]
            await workflow.execute_local_activity(
                raw_decide, batch, start_to_close_timeout=timedelta(seconds=30)
            )
            self.decided += len(batch)

    @workflow.update
    def intake(self, request: dict[str, Any]) -> dict[str, Any]:
        events = request["events"]
        self.queue.extend(events)
        return {"accepted": len(events), "queue_length": len(self.queue)}

    @workflow.query
    def decided_count(self) -> int:
        return self.decided


@workflow.defn
class RawFleetSink:
    """Counts the events it is sent (by update or signal) and waits for ever, like an idle agent."""

    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        _counted()  # its first task ran: the benchmark waits for every sink's before a clock starts
        await workflow.wait_condition(lambda: self.done)
        return self.count

    @workflow.update
    def intake(self, request: dict[str, Any]) -> dict[str, Any]:
        n = len(request["events"])
        self.count += n
        _counted(n)
        return {"accepted": n}

    @workflow.signal
    def ping(self, payload: Any) -> None:
        self.count += 1
        _counted()

    @workflow.query
    def handled(self) -> int:
        return self.count


@workflow.defn
class BareWorkflow:
    """A bare workflow: counts its first task, then waits, idle, for ever."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        _counted()
        await workflow.wait_condition(lambda: self.done)
