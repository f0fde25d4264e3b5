"""What a busy agent keeps in a worker's memory for each action it started in its current run.

    python bench/busy_agent_memory.py [--actions 400] [--warm 20]

An agent's run stays in the worker's cache while it runs, with the SDK core's record of every
command the run made: how an agent starts its actions (a child workflow, or a local activity
that starts it from the worker, ``activities/action_start.py``) decides what that record holds
per action, until the run continues as new (``runtime.max_actions_per_run``, 1,000 by default).
One ``bench_auto`` agent (every event proposes a low-risk action that runs at once) on a fresh
bench worker and an in-memory dev server: after ``--warm`` actions it reads the worker's memory
in use (Python's small objects and the C heap, as ``bench/idle_memory.py`` does) and RSS, then
``--actions`` more, one event at a time, and reads them again. Printed: the growth per action.
Run it on two builds to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from aiops.connection import connect
from bench.bench_common import rss_kb
from bench.stack import bench_stack, worker_process
from tests.helpers import agent_config, event


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--actions", type=int, default=400)
    parser.add_argument("--warm", type=int, default=20)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="aiops-busy-") + "/snap"
    env = {"BENCH_TRACEMALLOC": "0", "BENCH_TRACEMALLOC_OUT": out}
    # The server suggests continue-as-new at 4,000 history events (about 230 actions started as
    # children): raised, so the agent's run holds every action measured, whichever way it starts them.
    suggest = ["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=100000"]
    async with bench_stack(in_memory=True, server_args=suggest) as stack:
        queue = f"busy-{uuid.uuid4().hex[:8]}"
        os.environ["TEMPORAL_ADDRESS"] = stack.address
        aiops = AiopsClient(await connect(), queue)
        config = agent_config("bench_auto", runtime={"max_actions_per_run": 1000})
        with worker_process(stack.address, queue, env) as pid:
            await aiops.agents.start(config)

            async def actions(n: int) -> None:
                for _ in range(n):
                    await aiops.events.send(config.id, event("alert"))
                total = (await aiops.agents.status(config.id)).counters.actions_proposed
                deadline = time.monotonic() + 600
                while (await aiops.agents.status(config.id)).counters.actions_succeeded < total:
                    if time.monotonic() > deadline:
                        raise SystemExit("the actions did not all succeed within 10 minutes")
                    await asyncio.sleep(0.2)

            def in_use(n: int) -> int:
                Path(f"{out}.want.{n}").touch()
                while not os.path.exists(f"{out}.{n}.census"):
                    time.sleep(0.1)
                small, heap = json.loads(Path(f"{out}.{n}.census").read_text())["(heap in use)"]
                return int(small) + int(heap)

            await actions(args.warm)
            await asyncio.sleep(2)
            rss0, use0 = rss_kb(pid), in_use(1)
            await actions(args.actions)
            await asyncio.sleep(2)
            rss1, use1 = rss_kb(pid), in_use(2)
            status = await aiops.agents.status(config.id)
    n = args.actions
    print(
        f"{n} actions in run {status.run_number} of the agent: memory in use "
        f"+{(use1 - use0) / 1024 / n:.2f} KB per action, RSS +{(rss1 - rss0) / n:.2f} KB per action"
    )


if __name__ == "__main__":
    asyncio.run(main())
