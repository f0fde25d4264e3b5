"""A worker process for the benchmarks: the framework's workflows plus the raw-ceiling workflows.

The load generator runs in another process, as clients and workers do in production.
``BENCH_CACHE`` sets the workflow cache (default 4,000); ``BENCH_COUNTER_FILE`` the counter file;
``BENCH_RAW_UNSANDBOXED=1`` runs the raw workflows outside the sandbox, as the framework's own
run (by default they keep the SDK's default, the sandbox).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.agent_activities import AgentActivities
from activities.database.pool import database_url, open_pool
from agents.registry import load_agent_modules
from aiops.connection import connect
from aiops.runtime.worker_build import build_worker
from bench.noop_workflow import NoOpSink
from bench.probe_workflow import SignalToActivityProbe, probe_started
from bench.raw_workflows import BareWorkflow, RawDecider, RawFleetSink, raw_decide
from workflows.sandbox import OWN_PACKAGES


def trace_memory() -> None:
    """With ``BENCH_TRACEMALLOC=<frames>``: trace Python allocations; each SIGUSR1 dumps a snapshot
    to ``$BENCH_TRACEMALLOC_OUT.<n>`` (compare two with ``Snapshot.compare_to``), each SIGUSR2 a
    census of live objects by type to ``.<n>.census`` (``bench/idle_memory.py`` reads both)."""
    frames = os.environ.get("BENCH_TRACEMALLOC")
    if not frames:
        return
    import signal
    import tracemalloc

    tracemalloc.start(int(frames))
    dumps = [0]

    def dump(*_: object) -> None:
        dumps[0] += 1
        tracemalloc.take_snapshot().dump(f"{os.environ['BENCH_TRACEMALLOC_OUT']}.{dumps[0]}")

    signal.signal(signal.SIGUSR1, dump)

    def census(*_: object) -> None:  # SIGUSR2: live objects by type (count, shallow bytes) as JSON
        import gc
        import json
        import sys

        found: dict[str, list[int]] = {}
        for obj in gc.get_objects():
            kind = type(obj)
            entry = found.setdefault(f"{kind.__module__}.{kind.__qualname__}", [0, 0])
            entry[0] += 1
            entry[1] += sys.getsizeof(obj)
        dumps[0] += 1
        with open(f"{os.environ['BENCH_TRACEMALLOC_OUT']}.{dumps[0]}.census", "w") as out:
            json.dump(found, out)

    signal.signal(signal.SIGUSR2, census)


async def main(task_queue: str) -> None:
    trace_memory()
    load_agent_modules(["bench.observer_agent", "bench.latency_agent"])
    client = await connect()
    url = database_url()  # with DATABASE_URL the audit log and config store are in the measurement
    pool = await open_pool(url) if url else None
    async with build_worker(
        client,
        task_queue,
        AgentActivities(client=client),
        pool=pool,
        extra_workflows=[NoOpSink, SignalToActivityProbe, RawDecider, RawFleetSink, BareWorkflow],
        extra_activities=[probe_started, raw_decide],
        max_cached_workflows=int(os.environ.get("BENCH_CACHE", "4000")),
        unsandboxed_packages=[*OWN_PACKAGES, *(["bench"] if os.environ.get("BENCH_RAW_UNSANDBOXED") else [])],
    ):
        print(f"bench worker ready ({'with' if pool else 'without'} PostgreSQL)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
