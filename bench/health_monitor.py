"""One health-monitor pass over a fleet of idle, healthy agents, beside the raw visibility ceiling.

    python bench/health_monitor.py [--agents 10000] [--before] [--in-flight 64] [--db FILE [--reuse]]

Starts ``--agents`` idle agents (type ``bench_observer``, no health-check hook) on a fresh dev
server (a database file, like ``temporal-dev/``) with the worker in its own
process (``bench/bench_worker.py``), waits until every one has published its health summary, then
measures, in the same run:

* pass: one ``HealthMonitorWorkflow`` pass as workers run it (the fleet from visibility: healthy
  summaries counted, only agents that need it listed and queried). Wall time from the client,
  and the CPU seconds the worker and the dev server spent meanwhile.
* raw ceiling: a bare visibility list of the same N agents from this process (every page,
  decoded by the SDK), and a bare ``count_workflows``.
* with ``--before``: a full sweep (``observe_all``: a status query and a health check of every
  agent, what every pass did before ``health-fleet-v1``).

``--db FILE`` keeps the dev server's database (and the task queue, in ``FILE.queue``); a later run
with ``--reuse`` measures that fleet again with today's code, without starting it anew (starting
10,000 agents takes a while on 2 cores).

Target (issue 11): a pass over 10,000 healthy agents in at most 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiops.client import AiopsClient
from aiops.contracts.agent import agents_query
from aiops.contracts.search_attributes import ALL
from bench.stack import worker_process
from tests.helpers import agent_config
from workflows.health_monitor import HealthMonitorWorkflow, MonitorInput, MonitorReport

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def process_ids(name_part: str) -> list[int]:
    """This process's descendants whose command line contains ``name_part``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if name_part in command and _descends(parent, os.getpid()):
            found.append(int(entry.name))
    return found


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


class Cpu:
    """CPU seconds of the worker and the dev server over a block."""

    def __init__(self) -> None:
        self.worker = process_ids("bench_worker.py")
        self.server = process_ids("start-dev")
        self.start: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def __enter__(self) -> Cpu:
        self.start = {pid: cpu_seconds(pid) for pid in [*self.worker, *self.server]}
        return self

    def __exit__(self, *_: object) -> None:
        for role, pids in (("worker", self.worker), ("server", self.server)):
            self.used[role] = sum(cpu_seconds(pid) - self.start[pid] for pid in pids)

    def __str__(self) -> str:
        return f"worker CPU {self.used['worker']:.2f} s, server CPU {self.used['server']:.2f} s"


async def start_fleet(aiops: AiopsClient, n: int, in_flight: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    configs = [agent_config("bench_observer", id=f"hm-{run}-{i:05d}") for i in range(n)]
    gate = asyncio.Semaphore(in_flight)
    started = 0
    begin = time.monotonic()

    async def start(config) -> None:  # type: ignore[no-untyped-def]
        nonlocal started
        async with gate:
            await aiops.agents.start(config)
            started += 1
            if started % 1000 == 0:
                print(
                    f"  {started} agents started ({started / (time.monotonic() - begin):.0f}/s)", flush=True
                )

    await asyncio.gather(*(start(c) for c in configs))
    return [c.id for c in configs]


async def wait_for_summaries(client: Client, task_queue: str, n: int) -> None:
    query = agents_query(task_queue) + " AND AiopsHealth = 'ok'"
    while (count := (await client.count_workflows(query)).count) < n:
        print(f"  {count}/{n} agents published their summary", flush=True)
        await asyncio.sleep(2)  # a progress poll of the bench, not a synchronisation in a test


async def monitor_pass(client: Client, task_queue: str, **fields: object) -> tuple[MonitorReport, float, Cpu]:
    with Cpu() as cpu:
        begin = time.perf_counter()
        report = await client.execute_workflow(
            HealthMonitorWorkflow.run,
            MonitorInput(task_queue=task_queue, **fields),  # type: ignore[arg-type]
            id=f"bench-health-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        wall = time.perf_counter() - begin
    return report, wall, cpu


async def raw_list(client: Client, query: str) -> tuple[int, float, float]:
    begin = time.perf_counter()
    cpu = time.process_time()
    n = 0
    async for _ in client.list_workflows(query, page_size=1000):
        n += 1
    return n, time.perf_counter() - begin, time.process_time() - cpu


@dataclass
class Stack:
    env: WorkflowEnvironment
    task_queue: str


@asynccontextmanager
async def fleet_stack(db: Path | None, reuse: bool, cache: int) -> AsyncIterator[Stack]:
    """The dev server on a database file (a kept one with ``db``) and ``bench_worker.py``."""
    with tempfile.TemporaryDirectory() as tmp:
        database = db or Path(tmp) / "bench.db"
        queue_file = database.with_name(database.name + ".queue")
        task_queue = queue_file.read_text().strip() if reuse else f"bench-{uuid.uuid4()}"
        if db is not None and not reuse:
            queue_file.write_text(task_queue)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            dev_server_database_filename=str(database),
            data_converter=pydantic_data_converter,
            search_attributes=ALL,
        )
        try:
            with worker_process(
                env.client.service_client.config.target_host, task_queue, {"BENCH_CACHE": str(cache)}
            ):
                yield Stack(env, task_queue)
        finally:
            await env.shutdown()


async def main(args: argparse.Namespace) -> None:
    async with fleet_stack(args.db, args.reuse, args.cache) as stack:
        client = stack.env.client
        aiops = AiopsClient(client, stack.task_queue)
        begin = time.monotonic()
        if not args.reuse:
            print(f"starting {args.agents} agents ...", flush=True)
            await start_fleet(aiops, args.agents, args.in_flight)
        await wait_for_summaries(client, stack.task_queue, args.agents)
        print(f"fleet of {args.agents} ready in {time.monotonic() - begin:.0f}s", flush=True)

        results = []
        for attempt in range(args.repeat):
            report, wall, cpu = await monitor_pass(client, stack.task_queue)
            judged = sum(len(ids) for g in report.groups for ids in g.agents_by_type.values())
            counted = sum(report.counted.values())
            healthy = counted + sum(1 for h in report.verdicts() if h.status.value == "healthy")
            print(
                f"pass {attempt + 1}: {wall:.2f} s wall, {cpu}; {counted} counted healthy, {judged} judged "
                f"in groups, {report.observed} observed: {healthy} healthy",
                flush=True,
            )
            results.append(wall)
        since = datetime.now(UTC) - timedelta(hours=1)
        n, list_wall, list_cpu = await raw_list(client, agents_query(stack.task_queue, failed_since=since))
        for name, query in {
            "running only": agents_query(stack.task_queue),
            "bare type filter": "WorkflowType = 'AgentWorkflow'",
            "needing a look": agents_query(stack.task_queue) + " AND AiopsHealth != 'ok'",
        }.items():
            m, wall, cpu_used = await raw_list(client, query)
            print(f"  raw list ({name}): {m} in {wall:.2f} s wall ({cpu_used:.2f} s client CPU)")
        begin_count = time.perf_counter()
        counted = (await client.count_workflows(agents_query(stack.task_queue))).count
        count_wall = time.perf_counter() - begin_count
        print(
            f"raw ceiling: list of {n} agents {list_wall:.2f} s wall ({list_cpu:.2f} s client CPU); ", end=""
        )
        print(f"count of {counted} {count_wall * 1000:.0f} ms")
        best, median = min(results), sorted(results)[len(results) // 2]
        met = "MET" if best <= 2 else "NOT MET"
        print(
            f"RESULT agents={args.agents} pass_wall_s={best:.2f} (median {median:.2f}) ",
            end="",
        )
        print(f"raw_list_s={list_wall:.2f} ratio={best / list_wall:.2f} target<=2s {met}")
        if args.before:
            try:
                report, wall, cpu = await monitor_pass(client, stack.task_queue, observe_all=True)
                print(
                    f"before (full sweep, every agent queried): {wall:.2f} s wall, {cpu}; "
                    f"{report.observed} observed"
                )
            except Exception as err:  # a full sweep of a large fleet may exceed payload limits
                print(f"before (full sweep): failed: {type(err).__name__}: {err}; cause: {err.__cause__}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="monitor passes (the best and median are shown)"
    )
    parser.add_argument("--before", action="store_true", help="also a full sweep, as passes were before")
    parser.add_argument("--in-flight", type=int, default=64, help="agent starts at a time")
    parser.add_argument("--cache", type=int, default=4000, help="the worker's workflow cache")
    parser.add_argument("--db", type=Path, help="keep the dev server's database in this file")
    parser.add_argument("--reuse", action="store_true", help="measure the fleet kept in --db again")
    asyncio.run(main(parser.parse_args()))
