"""The raw ceiling: a workflow that only counts signals, sandboxed like the framework's own.

Each handled signal bumps the same decision counter the benchmark agents use
(outside the sandbox, and not on replay), so agents and no-op workflows are
observed the same way, with no query or visibility lag in either measurement.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.observer_agent import count_decision


@workflow.defn
class NoOpSink:
    """Counts signals and ends after ``expected`` of them."""

    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: self.count >= expected)
        return self.count

    @workflow.signal
    def ping(self, payload: dict) -> None:
        self.count += 1
        if not workflow.unsafe.is_replaying():
            with workflow.unsafe.sandbox_unrestricted():
                count_decision()
