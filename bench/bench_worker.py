"""A worker process for the benchmarks: the framework's workflows plus the raw-ceiling workflows.

The load generator runs in another process, as clients and workers do in production.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import Worker

from activities.agent_activities import AgentActivities
from agents.registry import load_agent_modules
from aiops.connection import connect
from bench.noop_workflow import NoOpSink
from bench.probe_workflow import SignalToActivityProbe, probe_started
from worker import WORKFLOWS


async def main(task_queue: str) -> None:
    load_agent_modules(["bench.observer_agent", "bench.latency_agent"])
    client = await connect()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[*WORKFLOWS, NoOpSink, SignalToActivityProbe],
        activities=[*AgentActivities().all(), probe_started],
        max_cached_workflows=int(os.environ.get("BENCH_CACHE", "4000")),
    ):
        print("bench worker ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
