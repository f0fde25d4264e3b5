"""The raw side of the benchmark's comparisons: workflows that do what the agent does, minus the agent.

Each is sandboxed like the framework's own workflows and reports what it handled through the
same counter file as the benchmark agents (outside the sandbox, not on replay):

* ``RawDecider``: takes events by an ``intake`` update (as the agent's facade delivers them),
  queues them, and decides each batch of up to ``batch_size`` with one local activity.
* ``RawFleetSink``: an idle no-op workflow that counts events, by ``intake`` update or ``ping``
  signal, and stays open (like an agent).
* ``BareWorkflow``: does nothing but wait; counts its first workflow task (the start benchmark).
* ``RawAgentStart``: starts as an agent does at Temporal's level, then waits (idle memory).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from aiops.contracts import search_attributes as sa
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


# The agent's ceiling of signals per run (workflows/agent/context.py), under the server's 10,000.
RAW_SIGNALS_PER_RUN = 8000


@workflow.defn
class RawDecider:
    """Events in by update (or, from independent senders the server refused an update slot, by
    ``submit`` signal), out in batches of ``batch_size``: one local activity per batch. It
    continues as new, carrying its count and a short queue, before the server's limit of
    signals per run (at the agent's ceiling) or when the server suggests it."""

    def __init__(self) -> None:
        self.queue: list[Any] = []
        self.decided = 0
        self.signals = 0

    @workflow.run
    async def run(self, batch_size: int, carried: dict[str, Any] | None = None) -> int:
        if carried:
            self.queue, self.decided = carried["queue"], carried["decided"]
        while True:
            await workflow.wait_condition(lambda: bool(self.queue) or self._ends())
            if self._ends():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[batch_size, {"queue": self.queue, "decided": self.decided}])
            batch, self.queue = self.queue[:batch_size], self.queue[batch_size:]
            await workflow.execute_local_activity(
                raw_decide, batch, start_to_close_timeout=timedelta(seconds=30)
            )
            self.decided += len(batch)

    def _ends(self) -> bool:
        """Time to continue as new: the queue short enough to carry."""
        full = self.signals >= RAW_SIGNALS_PER_RUN or workflow.info().is_continue_as_new_suggested()
        return full and len(self.queue) <= 1000

    @workflow.update
    def intake(self, request: dict[str, Any]) -> dict[str, Any]:
        events = request["events"]
        self.queue.extend(events)
        return {"accepted": len(events), "queue_length": len(self.queue)}

    @workflow.signal
    def submit(self, events: list[Any]) -> None:
        self.signals += 1
        self.queue.extend(events)

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


# Parts of the start ``RawAgentStart`` leaves out (``bench/idle_memory.py --raw-start-without``, set
# in the worker's environment): what each part of an agent's start keeps in a worker's memory.
RAW_START_PARTS = ("local-activity", "upsert", "details")


def _raw_start_without() -> frozenset[str]:
    with workflow.unsafe.sandbox_unrestricted():  # the bench's setting, read the same on replay
        return frozenset(filter(None, os.environ.get("BENCH_RAW_START_WITHOUT", "").split(",")))


# What an agent's start call weighs (``workflows/agent/lifecycle.py`` ``compact``, a default config).
_START_CALL = b'{"config": {"id": "raw-start", "name": "raw", "type": "raw", "pad": "%s"}}' % (b"x" * 240)


@activity.defn
async def raw_start_call(call: RawValue) -> dict[str, Any]:
    """The raw side of an agent's start local activity: answers about as much as it does."""
    return {"registered": True, "initialized": {"agent_class": "x", "subscribed_event_types": ["alert"]}}


@workflow.defn
class RawAgentStart:
    """Starts as an agent does at Temporal's level, with nothing of the agent's, then waits: takes
    a start input undecoded and lets its payload go (as ``parse_input`` does), runs one local
    activity with a call as long as the agent's, upserts the agent's four search attributes and
    sets its details (``bench/idle_memory.py --raw-start``: what is left of an idle agent's
    memory beyond this is the agent's own)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, payload: RawValue) -> None:
        object.__setattr__(payload, "payload", Payload())  # frozen: see parse_input
        without = _raw_start_without()
        if "local-activity" not in without:
            await workflow.execute_local_activity(
                raw_start_call,
                RawValue(Payload(metadata={"encoding": b"json/plain"}, data=_START_CALL)),
                start_to_close_timeout=timedelta(seconds=30),
            )
        info = workflow.info()
        if "upsert" not in without:
            workflow.upsert_search_attributes(
                [
                    sa.AGENT_ID.value_set(info.workflow_id),
                    sa.AGENT_TYPE.value_set("bench_observer"),
                    sa.AGENT_STATE.value_set("running"),
                    sa.HEALTH.value_set("ok"),
                ]
            )
        if "details" not in without:
            workflow.set_current_details("**raw start** (bench_observer) is *running*; config version 0")
        _counted()
        await workflow.wait_condition(lambda: self.done)
