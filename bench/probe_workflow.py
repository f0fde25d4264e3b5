"""The raw latency: a bare workflow that starts one activity when a signal arrives."""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def probe_started() -> list[float]:
    """Report when the activity body began and when it was scheduled (wall clock; one machine)."""
    return [time.time(), activity.info().current_attempt_scheduled_time.timestamp()]


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
