"""The event → execute path in the worker's own clock: where each millisecond goes.

    BENCH_WORKER_TIMELINE=/tmp/timeline.txt python bench/targets.py --only latency --repeat 1

The history's timestamps (``scenario_latency.steps``) are the server's: they show when the server
recorded a step, not how long the worker took to compute a task or waited for the server to
answer its completion. With ``BENCH_WORKER_TIMELINE`` set, the bench worker (``install``) writes
one line per workflow activation it receives and computes, per activation completion the server
has answered, and per activity task it is handed; ``steps`` then gives, for the latency samples,
the median offset of each step from the event's send, in the same clock as the execute body.

It wraps three private methods of the SDK's worker (``temporalio>=1.35,<2``): a bench tool, off
unless asked for. A changed SDK makes ``install`` raise at the worker's start, never a wrong
figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

ENV = "BENCH_WORKER_TIMELINE"  # the file the worker writes its lines to


def install(path: str) -> None:
    """Record, into ``path``, when this worker gets, computes and completes each activation and
    when it is handed each activity task (``kind epoch-seconds run-id [workflow-id] detail``)."""
    from temporalio.worker import _activity, _workflow, _workflow_instance

    out: TextIO = open(path, "w", buffering=1)

    def line(*parts: object) -> None:
        out.write(" ".join(str(p) for p in parts) + "\n")

    handle = _workflow._WorkflowWorker._handle_activation
    activate = _workflow_instance._WorkflowInstanceImpl.activate
    start_activity = _activity._ActivityWorker._handle_start_activity_task

    async def timed_handle(self: Any, act: Any) -> None:
        jobs = ",".join(job.WhichOneof("variant") for job in act.jobs)
        line("received", time.time(), act.run_id, "-", jobs)
        try:
            await handle(self, act)
        finally:  # the completion sent and, for a task's last activation, answered by the server
            line("completed", time.time(), act.run_id, "-", jobs)

    def timed_activate(self: Any, act: Any) -> Any:
        began = time.time()
        try:
            return activate(self, act)
        finally:
            took = f"{(time.time() - began) * 1000:.2f}"
            line("computed", time.time(), act.run_id, self._info.workflow_id, took)

    async def timed_start(self: Any, token: bytes, start: Any, running: Any) -> None:
        run = start.workflow_execution
        line("activity", time.time(), run.run_id, run.workflow_id, start.activity_type)
        await start_activity(self, token, start, running)

    _workflow._WorkflowWorker._handle_activation = timed_handle  # type: ignore[method-assign]
    _workflow_instance._WorkflowInstanceImpl.activate = timed_activate  # type: ignore[method-assign]
    _activity._ActivityWorker._handle_start_activity_task = timed_start  # type: ignore[method-assign, assignment]


Line = tuple[str, float, str, str, str]  # kind, at, run id, workflow id ("-": not known), detail


def read(path: Path) -> list[Line]:
    lines: list[Line] = []
    for text in path.read_text().splitlines():
        kind, at, run, workflow_id, detail = [*text.split(" ", 4), ""][:5]
        lines.append((kind, float(at), run, workflow_id, detail))
    return sorted(lines, key=lambda entry: entry[1])


def _first(entries: Iterable[Line], test: Callable[[Line], bool]) -> float | None:
    return next((at for entry in entries if test(entry) for at in (entry[1],)), None)


def sample_steps(
    lines: list[Line], agent_id: str, sent: float, action_id: str, body: float
) -> dict[str, float]:
    """Seconds from ``sent`` to each step of one sample, as the worker saw them."""
    runs = {run: wid for _, _, run, wid, _ in lines if wid != "-"}
    window = [entry for entry in lines if sent <= entry[1] <= body + 0.05]
    agent = [e for e in window if runs.get(e[2], "").endswith(agent_id)]
    action = [e for e in window if runs.get(e[2]) == action_id]
    marks: dict[str, float | None] = {
        "agent's update received": _first(agent, lambda e: e[0] == "received" and "do_update" in e[4]),
        "decision (local activity) handed over": _first(
            agent, lambda e: e[0] == "activity" and "decide" in e[4]
        ),
        "action start (local activity) handed over": _first(
            agent, lambda e: e[0] == "activity" and e[4] == "start_action"
        ),
        "action's first activation received": _first(action, lambda e: e[0] == "received"),
        "action's first activation computed": _first(action, lambda e: e[0] == "computed"),
        "action's first task answered by the server": _first(action, lambda e: e[0] == "completed"),
        "execute activity handed over": _first(
            action, lambda e: e[0] == "activity" and e[4] == "execute_action"
        ),
        "execute body started": body,
    }
    start = marks["action start (local activity) handed over"]
    if start is not None:
        marks["agent's task answered by the server"] = _first(
            agent, lambda e: e[0] == "completed" and e[1] > start and "resolve_activity" in e[4]
        )
    return {label: at - sent for label, at in marks.items() if at is not None}


def steps(path: Path, agent_id: str, samples: list[tuple[float, str, float, float]]) -> str:
    """Each step's median offset (ms) over ``samples`` (sent, action id, scheduled, body start),
    in order, with the number of samples it was seen in when not all."""
    lines = read(path)
    offsets: dict[str, list[float]] = {}
    for sent, action_id, _, body in samples:
        for label, seconds in sample_steps(lines, agent_id, sent, action_id, body).items():
            offsets.setdefault(label, []).append(seconds * 1000)
    ordered = sorted(offsets.items(), key=lambda item: statistics.median(item[1]))
    seen = len(samples)
    return ", ".join(
        f"+{statistics.median(v):.1f} {label}" + ("" if len(v) == seen else f" ({len(v)} of {seen})")
        for label, v in ordered
    )
