"""A worker process for the benchmarks: the framework's workflows plus the raw-ceiling workflows.

The load generator runs in another process, as clients and workers do in production.
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


async def main(task_queue: str) -> None:
    load_agent_modules(["bench.observer_agent", "bench.latency_agent"])
    client = await connect()
    url = database_url()  # with DATABASE_URL the audit log and config store are in the measurement
    pool = await open_pool(url) if url else None
    async with build_worker(
        client,
        task_queue,
        AgentActivities(client=client),
        pool=pool,
        extra_workflows=[NoOpSink, SignalToActivityProbe],
        extra_activities=[probe_started],
        max_cached_workflows=int(os.environ.get("BENCH_CACHE", "4000")),
    ):
        print(f"bench worker ready ({'with' if pool else 'without'} PostgreSQL)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
