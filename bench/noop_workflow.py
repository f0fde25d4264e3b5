"""The raw ceiling: a workflow that only counts signals, sandboxed like the framework's own."""

from __future__ import annotations

from temporalio import workflow


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
