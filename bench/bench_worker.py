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
from bench import worker_timeline
from bench.noop_workflow import NoOpSink
from bench.probe_workflow import ProbeWithUpsert, SignalToActivityProbe, probe_noop, probe_started
from bench.raw_workflows import (
    BareWorkflow,
    RawAgentStart,
    RawDecider,
    RawFleetSink,
    raw_decide,
    raw_start_call,
)
from workflows.sandbox import OWN_PACKAGES


async def trace_memory() -> None:
    """With ``BENCH_TRACEMALLOC=<frames>``: trace Python allocations; when the file
    ``$BENCH_TRACEMALLOC_OUT.want.<n>`` appears, dump a snapshot to ``$BENCH_TRACEMALLOC_OUT.<n>``
    and a census of live objects by type (count, shallow bytes) to ``.<n>.census``, then remove
    the request (``bench/idle_memory.py`` asks and reads both). Asked by file, not by signal
    (a signal lands on any thread). A traced worker on a loaded machine still stopped polling
    workflow tasks (by signal and by file alike): with tracing, use few workflows."""
    frames = os.environ.get("BENCH_TRACEMALLOC")
    if not frames:
        return
    import tracemalloc

    if int(frames) > 0:  # 0: the census alone (tracing slows a loaded worker to a stall)
        tracemalloc.start(int(frames))
    out = os.environ["BENCH_TRACEMALLOC_OUT"]
    n = 0
    while True:
        await asyncio.sleep(0.5)
        if _dump_if_asked(out, n + 1):
            n += 1


def _dump_if_asked(out: str, n: int) -> bool:
    import gc
    import json
    import tracemalloc

    want = Path(f"{out}.want.{n}")
    if not want.exists():
        return False
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{out}.{n}.tmp")
    else:
        Path(f"{out}.{n}.tmp").write_text("")
    found: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        entry = found.setdefault(f"{kind.__module__}.{kind.__qualname__}", [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(obj)
    found["(heap in use)"] = list(heap_in_use())
    Path(f"{out}.{n}.census").write_text(json.dumps(found))
    os.rename(f"{out}.{n}.tmp", f"{out}.{n}")
    want.unlink()
    return True


def heap_in_use() -> tuple[int, int]:
    """Bytes in use now: (Python's small-object allocator, the C heap). The C heap (glibc
    malloc, every arena) holds the SDK core's Rust state, pydantic-core's, protobuf messages and
    Python objects over 512 bytes; pymalloc's arenas are mapped apart. Unlike RSS, neither counts
    freed memory a heap keeps, so a difference of a few KB per workflow is not noise."""
    import ctypes
    import tempfile

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                "fordblks", "keepcost",
            )
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    # sys._debugmallocstats writes to the C stderr: read it from a file for the one figure.
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("# bytes in allocated blocks"))
    return int(line.split("=")[1].replace(",", "")), info.uordblks + info.hblkhd


async def main(task_queue: str) -> None:
    if os.environ.get(worker_timeline.ENV):
        worker_timeline.install(os.environ[worker_timeline.ENV])
    tracing = asyncio.create_task(trace_memory())
    load_agent_modules(["bench.observer_agent", "bench.latency_agent"])
    client = await connect()
    url = database_url()  # with DATABASE_URL the audit log and config store are in the measurement
    pool = await open_pool(url) if url else None
    async with build_worker(
        client,
        task_queue,
        AgentActivities(client=client),
        pool=pool,
        extra_workflows=[
            NoOpSink,
            SignalToActivityProbe,
            ProbeWithUpsert,
            RawDecider,
            RawFleetSink,
            BareWorkflow,
            RawAgentStart,
        ],
        extra_activities=[probe_started, probe_noop, raw_decide, raw_start_call],
        max_cached_workflows=int(os.environ.get("BENCH_CACHE", "4000")),
        unsandboxed_packages=[*OWN_PACKAGES, *(["bench"] if os.environ.get("BENCH_RAW_UNSANDBOXED") else [])],
    ):
        print(f"bench worker ready ({'with' if pool else 'without'} PostgreSQL)", flush=True)
        await asyncio.Event().wait()
    tracing.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
