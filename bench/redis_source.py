"""Entries per second through ``aiops source redis`` beside the gateway's alerts per second, same run.

    python bench/redis_source.py [--events 5000] [--agents 1] [--batch 200] [--repeat 3] [--in-memory]

The dev server, the worker (``bench/bench_worker.py``), the gateway (``python -m aiops.cli gateway``),
the Redis source (``python -m aiops.cli source redis``, reading the gateway's own config file so both
route alike), a real ``redis-server`` (tests/support/redis_server.py) and this load generator are
separate processes, as in production.

Per run and path: *gateway*, ``--events`` alerts as Alertmanager webhooks of ``--per-request``,
``--in-flight`` requests at a time (the gateway bench's sender); *redis*, the same number of events
XADDed as stream entries (pipelined by 500, the producer's cost inside the clock). Both clocks stop
when the agents' decision hook has seen every event (a counter file, no queries during the storm);
the redis path then also waits for its pending list to empty (every entry acknowledged). Each
path's figure is its median over ``--repeat`` runs; the CPU seconds the gateway and the source
spent are printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from aiops.client import AiopsClient
from bench.gateway_throughput import (
    COUNTER,
    ROOT,
    TOKEN,
    GatewayProcess,
    Sender,
    cpu_seconds,
    encoded,
    post,
    requests_for,
    wait_decided,
)
from bench.observer_agent import read_count
from bench.stack import bench_stack
from tests.helpers import agent_config
from tests.support.redis_server import RedisServer

STREAM = "bench:events"


def entry(agent: str, n: int) -> dict[str, str]:
    event = {
        "id": f"rb-{uuid.uuid4().hex}",
        "type": "alert",
        "source": f"host-{n % 50}",
        "severity": "medium",
        "data": {"labels": {"agent": agent, "alertname": "Bench"}, "n": n},
    }
    return {"event": json.dumps(event)}


def start_source(
    address: str, task_queue: str, routes: Path, url: str, batch: int, log: Path
) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "aiops.cli", "--task-queue", task_queue, "source", "redis"),
            *("--routes", str(routes), "--stream", STREAM, "--url", url, "--batch", str(batch)),
            *("--reload-every", "0", "--log-format", "text"),
        ],
        cwd=ROOT,
        # the gateway's config file names its bearer token by reference: the source resolves it too
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "PYTHONPATH": str(ROOT),
            "BENCH_GATEWAY_TOKEN": TOKEN,
        },
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 60
    while "redis source ready" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the redis source did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


async def redis_run(redis: Redis, agents: list[str], count: int) -> float:
    baseline = read_count(COUNTER[0])
    started = time.monotonic()
    for k in range(0, count, 500):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(k, min(count, k + 500)):
                pipe.xadd(STREAM, entry(agents[n % len(agents)], n))  # type: ignore[arg-type]
            await pipe.execute()
    await wait_decided(baseline, count, within=300)
    elapsed = time.monotonic() - started
    while (await redis.xpending(STREAM, "aiops"))["pending"]:
        await asyncio.sleep(0.01)
    return count / elapsed


async def gateway_run(sender: Sender, agents: list[str], args: argparse.Namespace) -> float:
    bodies = [encoded(b) for b in requests_for(agents, args.events, args.per_request)]
    baseline = read_count(COUNTER[0])
    started = time.monotonic()
    semaphore = asyncio.Semaphore(args.in_flight)

    async def one(body: bytes) -> None:
        async with semaphore:
            await post(sender, body, [0])

    await asyncio.gather(*(one(b) for b in bodies))
    await wait_decided(baseline, args.events, within=300)
    return args.events / (time.monotonic() - started)


async def scenario(aiops: AiopsClient, stack, redis_url: str, args: argparse.Namespace) -> None:
    configs = [agent_config("bench_observer") for _ in range(args.agents)]
    for c in configs:
        await aiops.agents.start(c)
    agents = [c.id for c in configs]
    for a in agents:
        while (await aiops.agents.status(a)).state != "running":
            await asyncio.sleep(0.05)
    gateway = GatewayProcess(stack.address, stack.task_queue, agents, stack.folder)
    log = stack.folder / "redis-source.log"
    source = start_source(stack.address, stack.task_queue, gateway.config_file, redis_url, args.batch, log)
    sender = Sender(gateway.url)
    redis = Redis.from_url(redis_url)
    rates: dict[str, list[float]] = {"gateway": [], "redis": []}
    cpu = {"gateway": 0.0, "redis": 0.0}
    try:
        async with httpx.AsyncClient() as http:
            await gateway.ready(http)
        await gateway_run(sender, agents, argparse.Namespace(**{**vars(args), "events": len(agents)}))
        await redis_run(redis, agents, len(agents))  # warm both paths
        for run in range(args.repeat):
            for path in ("gateway", "redis"):
                pid = gateway.process.pid if path == "gateway" else source.pid
                before = cpu_seconds(pid)
                rate = await (
                    gateway_run(sender, agents, args)
                    if path == "gateway"
                    else redis_run(redis, agents, args.events)
                )
                cpu[path] += cpu_seconds(pid) - before
                rates[path].append(rate)
                print(f"  run {run + 1}: {path:<8} {rate:8.1f} events/s", flush=True)
        totals = [(await aiops.agents.status(a)).counters.events_processed for a in agents]
        expected = 2 * len(agents) // len(agents) + 2 * args.repeat * args.events // len(agents)
        assert all(t == expected for t in totals), f"decisions per agent {totals}, expected {expected} each"
    finally:
        await redis.aclose()
        sender.close()
        gateway.stop()
        source.terminate()
        source.wait()
    gw, rd = statistics.median(rates["gateway"]), statistics.median(rates["redis"])
    print(
        f"{args.agents} agent(s): gateway {gw:8.1f} alerts/s   redis source {rd:8.1f} entries/s   "
        f"ratio {rd / gw:5.2f}"
    )
    per = args.repeat * args.events / 1000
    print(
        f"  CPU ms per 1000 events: gateway {cpu['gateway'] / per * 1000:.0f}, "
        f"redis source {cpu['redis'] / per * 1000:.0f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--batch", type=int, default=200, help="the source's --batch (entries per read)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-memory", action="store_true")
    args = parser.parse_args()
    handle, COUNTER[0] = tempfile.mkstemp(prefix="aiops-bench-decided-")
    os.close(handle)
    server = RedisServer().start()
    try:
        async with bench_stack(args.in_memory, {"BENCH_COUNTER_FILE": COUNTER[0]}) as stack:
            aiops = AiopsClient(stack.env.client, stack.task_queue)
            print(
                f"{args.events} events per run; gateway: webhooks of {args.per_request}, "
                f"{args.in_flight} in flight; "
                f"redis: one event per entry, reads of up to {args.batch}",
                flush=True,
            )
            await scenario(aiops, stack, server.url, args)
    finally:
        server.close()
        os.unlink(COUNTER[0])


if __name__ == "__main__":
    asyncio.run(main())
