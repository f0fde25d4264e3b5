"""The raw latency: a bare workflow that starts one activity when a signal arrives."""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.search_attributes import ACTION_STATUS, APPROVALS


@activity.defn
async def probe_started() -> list[float]:
    """Report when the activity body began and when it was scheduled (wall clock; one machine)."""
    return [time.time(), activity.info().current_attempt_scheduled_time.timestamp()]


@activity.defn
async def probe_noop() -> None:
    """Nothing: its completion is a workflow task for what can wait (``ProbeWithUpsert``)."""


@workflow.defn
class SignalToActivityProbe:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> list[float]:
        await workflow.wait_condition(lambda: self.go)
        return await workflow.execute_activity(probe_started, start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal
    def approve(self, payload: dict) -> None:
        self.go = True


@workflow.defn
class ProbeWithUpsert:
    """The probe with what an action's approval task adds before its execute activity, one part
    at a time (``bench/upsert_probe.py``): ``variant`` names them. ``timer``: the wait has a
    timeout, whose timer the signal cancels; ``upsert``: two search attribute upserts (the
    approvals count, then the status) before the activity is scheduled; ``one``: both in one
    upsert; ``after``: one upsert in the same task, after the activity is scheduled; ``defer``: the
    upsert in a later task (a 1 ms timer), after the activity was dispatched; ``noop``: the upsert
    in the task a second, empty activity (scheduled after the first) brings with its completion.
    A signal the workflow sends itself would be another way to a next task, but the server refuses
    it (``ExternalWorkflowExecutionNotFound``)."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, variant: str) -> list[float]:
        parts = set(variant.split("+"))
        timeout = timedelta(hours=1) if "timer" in parts else None
        await workflow.wait_condition(lambda: self.go, timeout=timeout)
        both = [APPROVALS.value_set(1), ACTION_STATUS.value_set("executing")]
        if "upsert" in parts:
            workflow.upsert_search_attributes(both[:1])
            workflow.upsert_search_attributes(both[1:])
        if "one" in parts:
            workflow.upsert_search_attributes(both)
        handle = workflow.start_activity(probe_started, start_to_close_timeout=timedelta(seconds=30))
        if "defer" in parts:
            await workflow.sleep(timedelta(milliseconds=1))
        if "noop" in parts:
            await workflow.execute_activity(probe_noop, start_to_close_timeout=timedelta(seconds=30))
        if parts & {"after", "defer", "noop"}:
            workflow.upsert_search_attributes(both)
        return await handle

    @workflow.signal
    def approve(self, payload: dict) -> None:
        self.go = True
