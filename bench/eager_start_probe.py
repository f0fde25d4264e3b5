"""What eager workflow start would save on event → execute: a child start beside an eager start.

    python bench/eager_start_probe.py [--samples 50] [--runs 3]

The agent starts each action as a child workflow: the server creates the child, records the start
in the parent, and only then schedules the child's first task, which a worker then polls (the
latency bench's median steps: tens of ms between the agent's task and the action's first task).
An eager start from a worker-side client (a local activity calling ``start_workflow`` with
``request_eager_start``) gets the child's first task back in the start's response, on the worker
that asked. This measures both on bare workflows, in one worker process on one dev server, beside
the raw signal → activity: a long-running parent takes a signal and starts a target workflow on
another queue (a child, or eagerly from a local activity), and the target's first task schedules
one activity on its own queue (eager dispatch); the clock runs from the signal to that activity's
body. Nothing of the framework runs here: the figures say what the start alone costs, to weigh the
change (docs/scale.md, "Latency").

A third mode, ``held``, starts eagerly too, but the local activity answers only once the target's
first activation has been computed in this process (a runner wrapping each instance tells it), so
the target's first completion goes to the server before the parent's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.approval_latency import raw_sample  # signal -> activity, as the approval bench's raw side
from bench.bench_common import percentile
from bench.probe_workflow import SignalToActivityProbe, probe_started
from bench.stack import bench_stack


@workflow.defn
class StartTarget:
    """The action's stand-in: its first task schedules one activity on its own queue."""

    @workflow.run
    async def run(self) -> list[float]:
        return await workflow.execute_activity(probe_started, start_to_close_timeout=timedelta(seconds=30))


FIRST_COMPUTED: dict[str, asyncio.Future[None]] = {}


class _Noting(WorkflowInstance):
    """Forwards to the real instance; after a run's first activation it tells a waiting starter."""

    def __init__(self, inner: WorkflowInstance, loop: asyncio.AbstractEventLoop) -> None:
        self._inner, self._loop, self._first = inner, loop, True

    def activate(self, act):  # type: ignore[no-untyped-def]
        completion = self._inner.activate(act)
        if self._first:
            self._first = False
            waiter = FIRST_COMPUTED.get(self._inner.get_info().workflow_id)
            if waiter is not None:
                self._loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))
        return completion

    def get_serialization_context(self, command_info):  # type: ignore[no-untyped-def]
        return self._inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info):  # type: ignore[no-untyped-def]
        return self._inner.get_external_store_context(command_info)

    def get_info(self):  # type: ignore[no-untyped-def]
        return self._inner.get_info()

    def get_thread_id(self):  # type: ignore[no-untyped-def]
        return self._inner.get_thread_id()


class NotingRunner(WorkflowRunner):
    def __init__(self) -> None:
        self._inner = UnsandboxedWorkflowRunner()

    def prepare_workflow(self, defn):  # type: ignore[no-untyped-def]
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _Noting(self._inner.create_instance(det), asyncio.get_running_loop())


class Starter:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def start_held(self, target: list[str]) -> bool:
        """As ``start_eagerly``, but answers only once the target's first activation has been
        computed here (at most 50 ms), so its completion reaches the server before the parent's."""
        waiter = FIRST_COMPUTED[target[0]] = asyncio.get_running_loop().create_future()
        try:
            eager = await self.start_eagerly(target)
            if eager:
                await asyncio.wait([waiter], timeout=0.05)
            return eager
        finally:
            FIRST_COMPUTED.pop(target[0], None)

    @activity.defn
    async def start_eagerly(self, target: list[str]) -> bool:
        """Start ``StartTarget`` with eager start from this worker's own client; True if the
        server handed its first task back here."""
        workflow_id, task_queue = target
        handle = await self._client.start_workflow(
            StartTarget.run, id=workflow_id, task_queue=task_queue, request_eager_start=True
        )
        return bool(getattr(handle, "__temporal_eagerly_started", False))


@workflow.defn
class StartingParent:
    """The agent's stand-in: long running, each signal starts one target, by ``mode``."""

    def __init__(self) -> None:
        self.queue: list[list[str]] = []
        self.eager = 0

    @workflow.run
    async def run(self, mode: str) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self.queue))
            target = self.queue.pop(0)
            if mode == "child":
                await workflow.start_child_workflow(
                    StartTarget.run,
                    id=target[0],
                    task_queue=target[1],
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
            else:
                eager = await workflow.execute_local_activity_method(
                    Starter.start_held if mode == "held" else Starter.start_eagerly,
                    target,
                    start_to_close_timeout=timedelta(seconds=10),
                )
                self.eager += int(eager)

    @workflow.signal
    def go(self, target: list[str]) -> None:
        self.queue.append(target)

    @workflow.query
    def eagerly_started(self) -> int:
        return self.eager


STARTED: dict[str, list[tuple[str, float]]] = {"child": [], "eager": [], "held": []}


async def steps(client: Client, mode: str) -> str:
    """The target's first events, median ms after the signal, over the run's samples."""
    offsets: dict[str, list[float]] = {}
    for target, sent in STARTED[mode]:
        seen: dict[str, float] = {}
        async for e in client.get_workflow_handle(target).fetch_history_events():
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()
            if name not in seen and not name.startswith("activity_task_completed"):
                seen[name] = e.event_time.ToDatetime(tzinfo=UTC).timestamp()
        for name, at in seen.items():
            offsets.setdefault(name, []).append((at - sent) * 1000)
    STARTED[mode].clear()
    ordered = sorted(offsets.items(), key=lambda item: statistics.median(item[1]))
    return ", ".join(f"+{statistics.median(v):.0f} {name}" for name, v in ordered)


async def start_sample(client: Client, parent: str, target_queue: str, mode: str = "") -> float:
    target = f"target-{uuid.uuid4()}"
    await asyncio.sleep(0.2)
    sent = time.time()
    if mode:
        STARTED[mode].append((target, sent))
    await client.get_workflow_handle(parent).signal(StartingParent.go, [target, target_queue])
    while True:  # the target exists once the parent started it
        try:
            started, _ = await client.get_workflow_handle(target).result()
            return float(started) - sent
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.005)


MODES = ("child", "eager", "held")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    async with bench_stack(False) as stack:
        client, queue = stack.env.client, f"eager-{uuid.uuid4().hex[:8]}"
        targets = f"{queue}.targets"
        starter = Starter(client)
        runner = NotingRunner()
        parents = Worker(
            client,
            task_queue=queue,
            workflows=[StartingParent, SignalToActivityProbe],
            activities=[starter.start_eagerly, starter.start_held, probe_started],
            workflow_runner=runner,
        )
        children = Worker(
            client,
            task_queue=targets,
            workflows=[StartTarget],
            activities=[probe_started],
            workflow_runner=runner,
        )
        async with parents, children:
            ids = {}
            for mode in MODES:
                ids[mode] = f"parent-{mode}-{uuid.uuid4().hex[:6]}"
                await client.start_workflow(StartingParent.run, mode, id=ids[mode], task_queue=queue)
                await start_sample(client, ids[mode], targets)  # warm-up
            await raw_sample(client, queue)
            for run in range(1, args.runs + 1):
                got: dict[str, list[float]] = {"raw": [], **{mode: [] for mode in MODES}}
                for _ in range(args.samples):
                    got["raw"].append(await raw_sample(client, queue))
                    for mode in MODES:
                        got[mode].append(await start_sample(client, ids[mode], targets, mode))
                eager = await client.get_workflow_handle(ids["eager"]).query(StartingParent.eagerly_started)
                raw50, raw99 = statistics.median(got["raw"]), percentile(got["raw"], 0.99)
                print(
                    f"run {run}: {args.samples} samples each, interleaved (eagerly started so far: {eager})"
                )
                for mode, values in got.items():
                    p50, p99 = statistics.median(values), percentile(values, 0.99)
                    print(
                        f"  {mode:<6} p50 {p50 * 1000:6.1f} ms ({p50 / raw50:.2f}x raw)  "
                        f"p99 {p99 * 1000:6.1f} ms ({p99 / raw99:.2f}x raw)"
                    )
                for mode in MODES:
                    print(f"  {mode} target's median steps: {await steps(client, mode)}")


if __name__ == "__main__":
    asyncio.run(main())
