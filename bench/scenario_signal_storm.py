"""A storm of raw signals into a small queue: every event decided exactly once, none refused.

    python bench/scenario_signal_storm.py [--events 20000] [--in-flight 50] [--max-queue 500]
        [--max-buffered-events N]

One dev server (in memory) and the bench worker in its own process; one ``bench_observer``
agent with ``runtime.max_queue`` set small, so most of the storm finds the queue full and is
spilled to the agent's overflow workflow (``agent-<id>:overflow``), which hands it back through
``intake``. ``--events`` ``submit_event`` signals go straight to the workflow (the raw client,
``--in-flight`` at once). Reported: the time until the agent's state shows every event
processed, events spilled, rejected (must be 0), processed (must equal ``--events``), runs,
the most the overflow held at once, and the memory: the worker's RSS growth during the storm
(the agent, its overflow and their caches in one process), and the largest ``status`` answer.
Then: how many times the agent's hook ran (the bench agent counts its calls, so a batch decided
twice shows as duplicates), and every run of the agent and of its overflow replayed against
today's workflow code (``bench/storm_replay.py``), with how each batch was decided. The bench
exits non-zero when an event was not decided exactly once, was rejected, or a run does not replay.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.service import RPCError

from aiops.client import AiopsClient
from aiops.contracts import agent as agent_contract
from aiops.contracts.agent import agent_workflow_id
from aiops.contracts.budgets import json_size
from aiops.contracts.overflow import OVERFLOW_HELD, overflow_workflow_id
from bench.observer_agent import read_count
from bench.stack import bench_stack
from bench.storm_replay import check
from tests.helpers import agent_config

QUERY_EVERY = 5.0  # seconds between two status queries during the storm


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--max-queue", type=int, default=500)
    parser.add_argument(
        "--max-buffered-events",
        type=int,
        default=None,
        help="the server's history.maximumBufferedEventsBatch (its default: 100); see "
        "docs/budgets-and-priority.md, 'Signals are never dropped'",
    )
    parser.add_argument("--dump", type=Path, default=None, help="save every run's history as JSON here")
    args = parser.parse_args(argv)
    server_args = []
    if args.max_buffered_events is not None:
        server_args = [
            "--dynamic-config-value",
            f"history.maximumBufferedEventsBatch={args.max_buffered_events}",
        ]
    hooks_file = tempfile.NamedTemporaryFile(prefix="storm-hooks-")  # closed (and removed) below
    counter = hooks_file.name
    worker_env = {"BENCH_COUNTER_FILE": counter}
    async with bench_stack(in_memory=True, server_args=server_args, worker_env=worker_env) as stack:
        aiops = AiopsClient(stack.env.client, stack.task_queue)
        config = agent_config("bench_observer", runtime={"max_queue": args.max_queue})
        await aiops.agents.start(config)
        handle = stack.env.client.get_workflow_handle(agent_workflow_id(config.id))
        overflow = stack.env.client.get_workflow_handle(overflow_workflow_id(config.id))
        gate = asyncio.Semaphore(args.in_flight)
        prefix = uuid.uuid4().hex[:8]
        rss_before = peak_rss = rss_kib(stack.worker_pid)
        peak_held = peak_status = 0

        refused = 0

        async def send(i: int) -> None:
            """A polite sender: a signal the server refuses (the run's signal limit, just before
            the agent continues as new) never reached history; it is sent again after a pause."""
            nonlocal refused
            payload = {"id": f"{prefix}-{i}", "type": "alert", "source": f"h{i % 50}", "data": {"n": i}}
            pause = 0.1
            while True:
                async with gate:
                    try:
                        await handle.signal(agent_contract.SUBMIT_EVENT, payload)
                        return
                    except RPCError:
                        refused += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

        started = last_said = time.monotonic()
        sending = asyncio.ensure_future(asyncio.gather(*(send(i) for i in range(args.events))))
        # Progress is read from the hook counter (a file); the agent and its overflow are queried
        # only every few seconds: a query competes with the very workflow tasks being measured,
        # and one to a run the worker evicted replays the whole run.
        status, last_asked = None, 0.0
        while True:
            now = time.monotonic()
            done = sending.done() and read_count(counter) >= args.events
            if done or now - last_asked > QUERY_EVERY:
                last_asked = now
                try:
                    status = await aiops.agents.status(config.id)
                    peak_status = max(peak_status, json_size(status))
                    peak_held = max(peak_held, await overflow.query(OVERFLOW_HELD, result_type=int))
                except Exception as err:  # busy, not started yet, or ended
                    print(f"    not answered: {str(err)[:200]}", flush=True)
            peak_rss = max(peak_rss, rss_kib(stack.worker_pid))
            if done and status is not None and status.counters.events_processed >= args.events:
                break
            if status is not None and now - last_said > 15:  # a long storm says how far it is
                last_said = now
                print(
                    f"    {now - started:.0f} s: hooks ran {read_count(counter)}, processed "
                    f"{status.counters.events_processed}, run {status.run_number}, "
                    f"queue {status.queue_length}, "
                    f"overflow held <= {peak_held}, worker RSS {rss_kib(stack.worker_pid) / 1024:.0f} MiB",
                    flush=True,
                )
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        await sending
        hooks = read_count(counter)
        replay = await check(stack.env.client, [handle.id, overflow.id], args.dump)
    hooks_file.close()  # and removed
    c = status.counters
    print(
        f"{args.events} raw signals ({args.in_flight} in flight, max_queue {args.max_queue}): "
        f"all processed in "
        f"{elapsed:.1f} s ({args.events / elapsed:.0f}/s); processed {c.events_processed}, received "
        f"{c.events_received}, spilled {c.events_spilled}, rejected {c.events_rejected}, deduplicated "
        f"{c.events_deduplicated}; signals the server refused before history (sent again) {refused}; "
        f"runs {status.run_number}; overflow held at most {peak_held}; worker RSS "
        f"{rss_before / 1024:.0f} MiB before, {peak_rss / 1024:.0f} MiB at peak "
        f"(+{(peak_rss - rss_before) / 1024:.0f} MiB for the one agent and its overflow); largest status "
        f"{peak_status / 1024:.0f} KiB",
        flush=True,
    )
    exact = c.events_processed == args.events and c.events_received == args.events and c.events_rejected == 0
    print(
        f"hook calls {hooks} for {args.events} events (duplicates {hooks - args.events}); "
        f"{'exact' if exact and hooks == args.events else 'NOT exact'}",
        flush=True,
    )
    print(replay.summary(), flush=True)
    for failure in replay.failures[:10]:
        print(f"    {failure[:2000]}", flush=True)
    return {
        "seconds": elapsed,
        "spilled": c.events_spilled,
        "rss_growth_kib": peak_rss - rss_before,
        "hook_duplicates": hooks - args.events,
        "exact": float(exact and hooks == args.events and not replay.failures),
    }


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main())["exact"] else 1)
