"""The benchmark's agent: decides every event and proposes nothing, so only the decision path is timed.

It counts its decisions into ``BENCH_COUNTER_FILE`` so the benchmark can tell
when all events are decided without querying the workflows: status queries
during a signal storm delay the very workflow tasks being measured.
"""

from __future__ import annotations

import os
import threading

from agents import ActionResult, AgentAction, BaseAgent, EventType, SystemEvent, register_agent

_decided = 0
_fd: int | None = None
_counting = threading.Lock()


def count_decision(n: int = 1) -> None:
    """Add ``n`` to this process's count in ``BENCH_COUNTER_FILE`` (a cheap progress signal: it
    counts hook calls, at least once each, not what an agent recorded).

    Called from the raw workflows' handlers too, which run in the worker's workflow threads at the
    same time: the add and the write are one step under a lock. Without it, two threads could write
    out of order, the file would keep the older count until the next call, and a benchmark waiting
    for the last event of a round would wait for a call that never comes (the likely cause of a
    quick run that hung in its fleet round in CI)."""
    global _decided, _fd
    with _counting:
        _decided += n
        path = os.environ.get("BENCH_COUNTER_FILE")
        if path:
            if _fd is None:
                _fd = os.open(path, os.O_RDWR | os.O_CREAT)
            os.pwrite(_fd, f"{_decided:012d}".encode(), 0)


def read_count(path: str) -> int:
    try:
        with open(path, "rb") as f:
            text = f.read(12)
        return int(text) if text else 0
    except FileNotFoundError:
        return 0


@register_agent("bench_observer")
class ObserverAgent(BaseAgent):
    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        count_decision()
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True)

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]
