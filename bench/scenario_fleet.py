"""Fleet scenarios: how fast agents start, and what an idle agent costs a worker in memory."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid

from aiops.client import AiopsClient
from bench.bench_common import Counter, bounded, profiled, rss_kb, wait_until
from bench.raw_workflows import BareWorkflow
from bench.scenario_throughput import Bench, _added, _now_iso, running_agents_since
from bench.stack import BenchStack, worker_process
from tests.helpers import agent_config


async def start_rate(bench: Bench, m: int) -> tuple[float, float]:
    """``m`` agents started through ``agents.start`` (``in_flight`` at a time) until every one is
    RUNNING (initialized: the state the agent publishes to visibility, polled every 50 ms), beside
    ``m`` bare workflows started the same way until each has run its first workflow task (counted
    by the worker). Returns starts/s (agent, bare)."""
    since = _now_iso()
    configs = [agent_config("bench_observer", runtime=bench.runtime) for _ in range(m)]
    started = time.monotonic()
    with profiled(bench.worker_pid, "starts-agent"):
        await bounded([lambda c=c: bench.aiops.agents.start(c) for c in configs], bench.in_flight)
        await wait_until(lambda: _running(bench, since, m), poll=0.05)
    agent_rate = m / (time.monotonic() - started)

    prefix = f"bare-{uuid.uuid4().hex[:8]}-"
    bench.counter.reset()
    started = time.monotonic()
    with profiled(bench.worker_pid, "starts-bare"):
        await bounded(
            [
                lambda i=i: bench.client.start_workflow(
                    BareWorkflow.run, id=f"{prefix}{i}", task_queue=bench.task_queue
                )
                for i in range(m)
            ],
            bench.in_flight,
        )
        await bench.counter.wait(m, poll=0.05)
    bare_rate = m / (time.monotonic() - started)
    bench.say(f"starts {m}: agents {agent_rate:.1f}/s, bare workflows {bare_rate:.1f}/s")
    for name, handle in (
        ("an agent's", bench.aiops.agents.handle(configs[0].id)),
        ("a bare workflow's", bench.client.get_workflow_handle(f"{prefix}0")),
    ):
        count, kinds = await _added(handle, 0)
        detail = ", ".join(f"{v} {t}" for t, v in sorted(kinds.items()))
        bench.say(f"  {name} start: {count} history events ({detail})")
    return agent_rate, bare_rate


async def _running(bench: Bench, since: str, m: int, task_queue: str | None = None) -> bool:
    return await running_agents_since(bench.client, since, task_queue) >= m


async def idle_rss(
    stack: BenchStack, bench: Bench, n: int, warm: int = 20
) -> tuple[float, float, float, float]:
    """Worker RSS per idle workflow: ``n`` agents in one fresh worker process, ``n`` bare workflows
    in another, each on its own task queue with a workflow cache of ``n`` + 2,000. RSS (from
    /proc) is read after ``warm`` workflows (the sandbox and the agent type loaded) and again
    once all ``n`` more are running and idle; per workflow = the growth / ``n``. All ``n`` agents
    must be RUNNING (visibility). The agents start without the client's worker and config check
    (two activities each, which a loaded machine can time out): the worker is fresh and serves the
    type, and what is measured is what they keep once idle. Returns (KB per agent, KB per bare
    workflow, agent starts/s, bare starts/s)."""
    bare, bare_rate = await _idle_side(stack, bench, "bare", n, warm)
    agent, agent_rate = await _idle_side(stack, bench, "agent", n, warm)
    return agent, bare, agent_rate, bare_rate


async def _idle_side(stack: BenchStack, bench: Bench, side: str, n: int, warm: int) -> tuple[float, float]:
    handle, path = tempfile.mkstemp(prefix="aiops-bench-idle-")
    os.close(handle)
    queue = f"bench-idle-{side}-{uuid.uuid4().hex[:8]}"
    env = {**stack.worker_env, "BENCH_CACHE": str(n + warm + 2000), "BENCH_COUNTER_FILE": path}
    client = stack.env.client
    aiops = AiopsClient(client, queue)
    counter = Counter(path)
    since = _now_iso()

    async def start(count: int, label: str) -> None:
        if side == "agent":
            configs = [agent_config("bench_observer", runtime=bench.runtime) for _ in range(count)]
            await bounded(
                [lambda c=c: aiops.agents.start(c, require_worker=False) for c in configs], bench.in_flight
            )
        else:
            jobs = [
                lambda i=i: client.start_workflow(
                    BareWorkflow.run, id=f"{queue}-{label}-{i}", task_queue=queue
                )
                for i in range(count)
            ]
            await bounded(jobs, bench.in_flight)

    async def all_up(total: int) -> None:
        if side == "agent":
            await wait_until(lambda: _running(bench, since, total, queue), within=3600, poll=0.5)
        else:
            await counter.wait(total, within=3600, poll=0.1)

    try:
        with worker_process(stack.address, queue, env) as pid:
            await start(warm, "warm")
            await all_up(warm)
            await asyncio.sleep(3)
            before = rss_kb(pid)
            started = time.monotonic()
            await start(n, "idle")
            await all_up(warm + n)
            rate = n / (time.monotonic() - started)
            await asyncio.sleep(5)  # idle: every task done
            after = rss_kb(pid)
            if side == "agent":
                running = await running_agents_since(client, since, queue)
                assert running == warm + n, f"only {running} of {warm + n} agents running"
    finally:
        os.unlink(path)
    per = (after - before) / n
    bench.say(
        f"idle {side}: worker RSS {before / 1024:.0f} MB -> {after / 1024:.0f} MB for {n}: "
        f"{per:.1f} KB each; started at {rate:.1f}/s"
    )
    return per, rate
