"""What an idle agent keeps in a worker's memory, by component, beside a bare raw workflow.

    python bench/idle_memory.py [--agents 2000] [--frames 0] [--top 25] [--sandboxed-raw] [--raw-start]
                                [--postgres]

For each side (``BareWorkflow``s, unsandboxed like the framework's own unless ``--sandboxed-raw``,
then ``bench_observer`` agents, and with ``--raw-start`` ``RawAgentStart``s: raw workflows that
start as an agent does at Temporal's level, with nothing of the agent's), a fresh bench worker
traces Python allocations (``BENCH_TRACEMALLOC``, dumps asked for by file); after ``--warm``
workflows are idle it dumps a snapshot and a census of live objects by type, then ``--agents``
more are started and left idle, and it dumps both again.
Printed, per workflow: the worker's RSS growth (tracing makes it larger than in
``targets.py``'s idle figure: compare the sides, not the absolute values); the memory in use,
Python's small objects (pymalloc) and the C heap (glibc: the SDK core, pydantic-core, protobuf,
Python objects over 512 bytes), which unlike RSS does not keep what was freed, so a change of a
KB per workflow shows; the traced Python growth, and the growth attributed

* by component: the innermost frame of each allocation's traceback that is in this project
  (``workflows/agent/context.py``, ``aiops/contracts/...``), else in a library (temporalio's
  workflow runner, pydantic, protobuf, asyncio), with its function;
* by object type: the census difference (count and shallow bytes per workflow).

What RSS grows by beyond the traced Python memory is the SDK's Rust core (its copy of each
run's state machines and history) and allocator overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter as Tally
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from aiops.connection import connect
from aiops.contracts.agent import AgentWorkflowInput
from bench.bench_common import Counter, bounded, rss_kb, wait_until
from bench.raw_workflows import RAW_START_PARTS, BareWorkflow
from bench.scenario_throughput import _now_iso, running_agents_since
from bench.stack import bench_stack, worker_process
from tests.helpers import agent_config

ROOT = str(Path(__file__).resolve().parents[1])
PROJECT = ("/workflows/", "/aiops/", "/agents/", "/activities/", "/bench/")


def component(trace: tracemalloc.Traceback) -> str:
    """Where an allocation belongs: its innermost project frame, else its innermost library frame."""
    inner_first = list(trace)[::-1]  # a traceback runs from the oldest frame to the most recent
    for frame in inner_first:
        name = frame.filename
        if name.startswith(ROOT) and "/.venv/" not in name and any(p in name for p in PROJECT):
            return f"{name.removeprefix(ROOT + '/')}:{frame.lineno}"
    for frame in inner_first:
        name = frame.filename
        if "site-packages/" in name:
            return f"{name.split('site-packages/')[1]}:{frame.lineno}"
    return f"{inner_first[0].filename.rsplit('/', 2)[-1]}:{inner_first[0].lineno}" if inner_first else "?"


async def side(
    stack_address: str, worker_env: dict[str, str], kind: str, args: argparse.Namespace
) -> dict[str, Any]:
    handle, counter_path = tempfile.mkstemp(prefix="aiops-idle-mem-")
    os.close(handle)
    out = tempfile.mkdtemp(prefix=f"aiops-idle-{kind}-") + "/snap"
    queue = f"idle-mem-{kind}-{uuid.uuid4().hex[:8]}"
    env = {
        **worker_env,
        "BENCH_CACHE": str(args.agents + args.warm + 2000),
        "BENCH_COUNTER_FILE": counter_path,
        "BENCH_TRACEMALLOC": str(args.frames),
        "BENCH_TRACEMALLOC_OUT": out,
    }
    if not args.sandboxed_raw:
        env["BENCH_RAW_UNSANDBOXED"] = "1"
    env["BENCH_RAW_START_WITHOUT"] = args.raw_start_without
    counter = Counter(counter_path)
    since = _now_iso()
    os.environ["TEMPORAL_ADDRESS"] = stack_address
    client = await connect()
    aiops = AiopsClient(client, queue)

    async def start(count: int, label: str) -> None:
        if kind == "agent":
            configs = [agent_config("bench_observer") for _ in range(count)]
            await bounded([lambda c=c: aiops.agents.start(c, require_worker=False) for c in configs], 50)
        elif kind == "raw-start":
            start_input = AgentWorkflowInput(config=agent_config("bench_observer"))
            await bounded(
                [
                    lambda i=i: client.start_workflow(  # by name: it takes its input undecoded
                        "RawAgentStart", start_input, id=f"{queue}-{label}-{i}", task_queue=queue
                    )
                    for i in range(count)
                ],
                50,
            )
        else:
            await bounded(
                [
                    lambda i=i: client.start_workflow(
                        BareWorkflow.run, id=f"{queue}-{label}-{i}", task_queue=queue
                    )
                    for i in range(count)
                ],
                50,
            )

    async def all_up(total: int) -> None:
        if kind == "agent":
            await wait_until(lambda: _running(total), within=3600, poll=0.5)
        else:
            await counter.wait(total, within=3600, poll=0.1)

    async def _running(total: int) -> bool:
        return await running_agents_since(client, since, queue) >= total

    def dump(n: int) -> tuple[tracemalloc.Snapshot | None, dict[str, list[int]]]:
        Path(f"{out}.want.{n}").touch()
        _wait_file(f"{out}.{n}")
        census = json.loads(Path(f"{out}.{n}.census").read_text())
        return (tracemalloc.Snapshot.load(f"{out}.{n}") if args.frames else None), census

    with worker_process(stack_address, queue, env) as pid:
        await start(args.warm, "warm")
        await all_up(args.warm)
        await asyncio.sleep(3)
        rss0 = rss_kb(pid)
        snap0, census0 = dump(1)
        await start(args.agents, "idle")
        await all_up(args.warm + args.agents)
        await asyncio.sleep(5)
        rss1 = rss_kb(pid)
        snap1, census1 = dump(2)
    n = args.agents
    by_component: Tally[str] = Tally()
    if snap0 is not None and snap1 is not None:
        for stat in snap1.compare_to(snap0, "traceback"):
            by_component[component(stat.traceback)] += stat.size_diff
    traced = sum(by_component.values())
    heap0, heap1 = census0.pop("(heap in use)"), census1.pop("(heap in use)")
    types = {
        name: ((v[0] - census0.get(name, [0, 0])[0]) / n, (v[1] - census0.get(name, [0, 0])[1]) / n)
        for name, v in census1.items()
    }
    os.unlink(counter_path)
    return {
        "rss": (rss1 - rss0) / n,
        "traced": traced / 1024 / n,
        "pymalloc": (heap1[0] - heap0[0]) / 1024 / n,
        "c_heap": (heap1[1] - heap0[1]) / 1024 / n,
        "by_component": by_component,
        "types": types,
    }


def _wait_file(path: str, within: float = 600) -> None:
    """Until the worker renamed its dump into place (a rename: never seen half written)."""
    deadline = time.monotonic() + within
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.5)


def report(kind: str, result: dict[str, Any], n: int, top: int) -> None:
    print(
        f"\n{kind}: worker RSS +{result['rss']:.1f} KB per workflow (traced), Python allocations "
        f"+{result['traced']:.1f} KB per workflow"
    )
    print(
        f"  in use: Python small objects +{result['pymalloc']:.1f} KB, C heap (Rust core, "
        f"pydantic-core, protobuf, large objects) +{result['c_heap']:.1f} KB per workflow"
    )
    print(f"  by component (bytes per workflow, top {top}):")
    for where, size in result["by_component"].most_common(top):
        print(f"    {size / n:8.0f}  {where}")
    print("  by object type (count, shallow bytes per workflow):")
    ordered = sorted(result["types"].items(), key=lambda kv: -kv[1][1])
    for name, (count, size) in ordered[:top]:
        if size <= 0:
            break
        print(f"    {count:6.1f} {size:8.0f}  {name}")


async def _sides(args: argparse.Namespace, database_url: str | None) -> dict[str, dict[str, Any]]:
    async with bench_stack(True, database_url=database_url) as stack:
        results: dict[str, dict[str, Any]] = {}
        for kind in ("bare", "agent", *(["raw-start"] if args.raw_start else [])):
            print(f"{kind}: {args.warm} + {args.agents} idle workflows ...", flush=True)
            results[kind] = await side(stack.address, stack.worker_env, kind, args)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument(
        "--frames", type=int, default=0, help="tracemalloc frames (0: the census alone; tracing is slow)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sandboxed-raw", action="store_true")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="a PostgreSQL for the workers (config store, audit log), as agents run in production: "
        "an agent's start then registers its config there",
    )
    parser.add_argument(
        "--raw-start",
        action="store_true",
        help="a third side: RawAgentStart, a raw workflow starting as an agent does at Temporal's "
        "level (its input, a local activity, the search-attribute upsert) with nothing of the agent's",
    )
    parser.add_argument(
        "--raw-start-without",
        default="",
        help=f"leave these parts out of the raw start, comma-separated ({', '.join(RAW_START_PARTS)}): "
        "what each part of the start keeps per workflow",
    )
    args = parser.parse_args()
    unknown = set(filter(None, args.raw_start_without.split(","))) - set(RAW_START_PARTS)
    if unknown:
        parser.error(f"--raw-start-without: no such part {', '.join(sorted(unknown))}")
    postgres = None
    if args.postgres:  # the config store and audit log, as agents run in production
        from tests.support.postgres_server import PostgresServer

        postgres = PostgresServer()
        postgres.start()
    try:
        results = await _sides(args, postgres.url if postgres else None)
    finally:
        if postgres is not None:
            postgres.stop()
    for kind, result in results.items():
        report(kind, result, args.agents, args.top)
    a, b = results["agent"], results["bare"]
    print(
        f"\nagent - bare, in use: Python small objects {a['pymalloc'] - b['pymalloc']:+.1f} KB, "
        f"C heap {a['c_heap'] - b['c_heap']:+.1f} KB per workflow"
    )
    for other in ("bare", "raw-start"):
        if other in results:
            o = results[other]
            print(
                f"agent / {other}: RSS {a['rss'] / o['rss']:.2f}x, in use "
                f"{(a['pymalloc'] + a['c_heap']) / (o['pymalloc'] + o['c_heap']):.2f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
