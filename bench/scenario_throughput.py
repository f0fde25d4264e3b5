"""Throughput scenarios: the storm, batched intake, the fleet, and history events per event.

Every agent count is read from what the agent recorded (its ``status`` query: events_received,
events_processed, ...); the worker's counter file (hook calls, at least once each) only tells
when to ask. The raw workflows are in ``raw_workflows.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from aiops.client import AiopsClient
from aiops.client.events import INTAKE_IN_FLIGHT_PER_AGENT
from aiops.contracts.agent import (
    WORKFLOW_TYPE,
    AgentMessages,
    AgentState,
    AgentStatus,
    EventOutcome,
    agent_workflow_id,
)
from bench.bench_common import Counter, bounded, event_payload, profiled, wait_until
from bench.raw_workflows import RawDecider, RawFleetSink
from tests.helpers import agent_config


@dataclass
class Bench:
    """What a scenario needs: the facade, the raw client, the worker's queue and counter."""

    aiops: AiopsClient
    client: Client
    task_queue: str
    counter: Counter
    runtime: dict[str, Any] = field(default_factory=dict)
    pool: asyncpg.Pool | None = None
    in_flight: int = 50
    worker_pid: int = 0  # the bench worker's, for BENCH_PROFILE
    log: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(f"    {text}", flush=True)
        self.log.append(text)


def stack_cpu(worker_pid: int) -> dict[str, float]:
    """CPU seconds so far (user + system, Linux /proc) of the load generator (this process), the
    worker and the dev server (this process's child named temporal): every CPU-second anywhere
    shows in a rate on a busy box, so a scenario says whose they were."""
    pids = {"load": os.getpid(), "worker": worker_pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if int(rest.split()[1]) == os.getpid() and "temporal" in name:
            pids["server"] = int(stat.parent.name)
    out = {}
    for role, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[role] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def cpu_since(before: dict[str, float], worker_pid: int) -> str:
    now = stack_cpu(worker_pid)
    return " ".join(f"{role} {now[role] - before.get(role, 0.0):.2f}" for role in now)


async def processed(bench: Bench, agent_id: str) -> AgentStatus:
    return await bench.aiops.agents.status(agent_id)


async def warm_agent(bench: Bench, agent_type: str = "bench_observer", **overrides: Any) -> str:
    """A started agent that has decided one event and is idle again."""
    config = agent_config(agent_type, runtime=bench.runtime, **overrides)
    await bench.aiops.events.send(config.id, event_payload(-1), config=config)
    await wait_until(lambda: _processed_at_least(bench, config.id, 1))
    return config.id


async def _processed_at_least(bench: Bench, agent_id: str, n: int) -> bool:
    return (await bench.aiops.agents.status(agent_id)).counters.events_processed >= n


async def wait_recorded(
    bench: Bench, agent_id: str, expected: int, sent: int, stall: float = 20, poll: float = 0.02
) -> AgentStatus:
    """Until the agent's state shows ``expected`` events processed. The counter file says when to
    ask (no status query competes with the storm's tasks before), then the state is asked every
    ``poll`` seconds; if nothing moves for ``stall`` seconds the agent's state is returned as it
    is, short of ``expected``."""
    last, moved = -1, time.monotonic()
    while True:
        seen = bench.counter.seen
        if seen != last:
            last, moved = seen, time.monotonic()
        if seen >= sent or time.monotonic() - moved > stall:
            status = await bench.aiops.agents.status(agent_id)
            if status.counters.events_processed >= expected or time.monotonic() - moved > stall:
                return status
            await asyncio.sleep(poll)
        else:
            await asyncio.sleep(0.005)


async def task_summary(client: Client, workflow_id: str) -> dict[str, int]:
    """Across every run of a workflow: runs, history events, workflow tasks, failed/timed-out tasks,
    search-attribute upserts (the health summary's changes), and the workflow tasks' time in ms:
    waiting (scheduled → started) and in the worker (started → completed, local activities
    included)."""
    tally: Tally[str] = Tally()
    async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        tally["runs"] += 1
        scheduled = started = None
        async for e in client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history_events():
            tally["history events"] += 1
            at = e.event_time.ToDatetime()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                scheduled = at
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started = at
                if scheduled is not None:
                    tally["task wait ms"] += round((at - scheduled).total_seconds() * 1000)
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                tally["tasks"] += 1
                if started is not None:
                    tally["task work ms"] += round((at - started).total_seconds() * 1000)
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                tally["failed tasks"] += 1
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                tally["timed-out tasks"] += 1
            elif e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                tally["upserts"] += 1
                fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                if "AiopsHealth" in fields:
                    tally[f"health {fields['AiopsHealth'].data.decode().strip(chr(34))}"] += 1
    return dict(tally)


async def audit_rows(pool: asyncpg.Pool, agent_id: str) -> tuple[int, int]:
    """The agent's event rows in the audit log: all, and distinct event ids."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT detail->>'event_id') AS d FROM audit_log "
        "WHERE agent_id = $1 AND step = 'event_received'",
        agent_id,
    )
    assert row is not None
    return int(row["n"]), int(row["d"])


# ----- 1. the storm ------------------------------------------------------------------------------


@dataclass
class StormResult:
    exact: bool
    rate: float  # events recorded per second, from the first send to the state confirming
    text: str


async def storm(bench: Bench, n: int, mode: str, batch: int = 100) -> StormResult:
    """``n`` events to one warm agent, flat out through the facade: every ``events.send`` at once
    (``single``; the facade coalesces concurrent sends into intake updates), or ``events.send_many``
    calls of ``batch`` events all at once (``batched``). Exact when the agent recorded every
    accepted event once (received, processed), none rejected or queued, no workflow task failed
    or timed out, and (with PostgreSQL) one audit row per event."""
    agent_id = await warm_agent(bench)
    before = (await bench.aiops.agents.status(agent_id)).counters
    events = [event_payload(i, "storm") for i in range(n)]
    bench.counter.reset()
    started = time.monotonic()
    if mode == "single":
        results = await asyncio.gather(
            *(bench.aiops.events.send(agent_id, e) for e in events), return_exceptions=True
        )
    else:
        chunks = [events[k : k + batch] for k in range(0, n, batch)]
        per_chunk = await asyncio.gather(
            *(bench.aiops.events.send_many(agent_id, c, batch_size=batch) for c in chunks),
            return_exceptions=True,
        )
        results = []
        for chunk, answers in zip(chunks, per_chunk, strict=True):
            results += [answers] * len(chunk) if isinstance(answers, BaseException) else answers
    return await _judged(bench, agent_id, before, n, results, started, mode)


async def _judged(
    bench: Bench, agent_id: str, before: Any, n: int, results: list[Any], started: float, mode: str
) -> StormResult:
    """Wait for the agent's state to show every accepted event, then judge the storm exact or not."""
    sent_in = time.monotonic() - started
    refused = sum(1 for r in results if isinstance(r, BaseException))
    accepted = sum(  # queued: by signal, when independent senders took the agent's update slots
        1
        for r in results
        if not isinstance(r, BaseException) and r.outcome in (EventOutcome.ACCEPTED, EventOutcome.QUEUED)
    )
    status = await wait_recorded(bench, agent_id, before.events_processed + accepted, accepted)
    elapsed = time.monotonic() - started
    c = status.counters
    received = c.events_received - before.events_received
    done = c.events_processed - before.events_processed
    hooks = bench.counter.seen
    tasks = await task_summary(bench.client, agent_workflow_id(agent_id))
    wedged = tasks.get("failed tasks", 0) + tasks.get("timed-out tasks", 0)
    exact = (
        refused == 0
        and accepted == n
        and received == n
        and done == n
        and c.events_rejected == before.events_rejected
        and c.events_deduplicated == before.events_deduplicated
        and status.queue_length == 0
        and wedged == 0
    )
    errors = sorted({type(r).__name__ for r in results if isinstance(r, BaseException)})
    text = (
        f"{mode} {n}: sent in {sent_in:.1f}s, {accepted} accepted, {refused} refused"
        f"{' (' + ', '.join(errors) + ')' if errors else ''}; state: {received} "
        f"received, {done} processed, queue {status.queue_length}; hook calls {hooks} "
        f"({hooks - done:+d}); {tasks.get('runs', 0)} runs, {tasks.get('tasks', 0)} tasks, {wedged} "
        f"failed/timed-out; {done / elapsed:.0f} events/s recorded"
    )
    if bench.pool is not None:
        expected = before.events_processed + done  # the warm-up event has its row too
        rows = (0, 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = await audit_rows(bench.pool, agent_id)
            if rows[0] >= expected:
                break
            await asyncio.sleep(0.05)
        landed = time.monotonic() - started
        exact = exact and rows == (expected, expected)
        text += (
            f"; audit rows {rows[0]} ({rows[1]} distinct events) of {expected}, {done / landed:.0f}/s landed"
        )
    bench.say(text)
    return StormResult(exact, done / elapsed, text)


# ----- 2. batched intake vs the raw local-activity decider ---------------------------------------


async def batched(bench: Bench, n: int, batch: int = 100) -> tuple[float, float]:
    """``n`` events in intake updates of ``batch`` (at most ``INTAKE_IN_FLIGHT_PER_AGENT`` in
    flight, the facade's own gate): the agent through ``events.send_many``, the raw ``RawDecider``
    by ``execute_update`` of the same batches, deciding each batch with one local activity.
    The clock stops when the workflow's state shows all ``n`` decided (the agent's
    ``events_processed``, the raw ``decided_count`` query). Returns events/s (agent, raw)."""
    agent_id = await warm_agent(bench)
    base = (await bench.aiops.agents.status(agent_id)).counters.events_processed
    chunks = [[event_payload(i) for i in range(k, min(n, k + batch))] for k in range(0, n, batch)]
    bench.counter.reset()
    cpu = stack_cpu(bench.worker_pid)
    started = time.monotonic()
    with profiled(bench.worker_pid, "batched-agent"):
        await asyncio.gather(*(bench.aiops.events.send_many(agent_id, c, batch_size=batch) for c in chunks))
        # Asked as often as the raw decider below is (its last batch is recorded after its hooks ran).
        status = await wait_recorded(bench, agent_id, base + n, n, poll=0.005)
    agent_rate = n / (time.monotonic() - started)
    agent_cpu = cpu_since(cpu, bench.worker_pid)
    assert status.counters.events_processed == base + n, (
        f"agent recorded {status.counters.events_processed - base}/{n}"
    )

    raw = await bench.client.start_workflow(
        RawDecider.run, batch, id=f"raw-decider-{uuid.uuid4().hex[:8]}", task_queue=bench.task_queue
    )
    await raw.execute_update(RawDecider.intake, {"events": [event_payload(-1)]})
    await wait_until(lambda: _decided_at_least(raw, 1))
    chunks = [[event_payload(i) for i in range(k, min(n, k + batch))] for k in range(0, n, batch)]
    bench.counter.reset()
    cpu = stack_cpu(bench.worker_pid)
    started = time.monotonic()
    with profiled(bench.worker_pid, "batched-raw"):
        await bounded(
            [lambda c=c: raw.execute_update(RawDecider.intake, {"events": c}) for c in chunks],
            INTAKE_IN_FLIGHT_PER_AGENT,
        )
        await bench.counter.wait(n)
        await wait_until(lambda: _decided_at_least(raw, 1 + n), poll=0.005)
    raw_rate = n / (time.monotonic() - started)
    raw_cpu = cpu_since(cpu, bench.worker_pid)
    agent_tasks = await task_summary(bench.client, agent_workflow_id(agent_id))
    raw_tasks = await task_summary(bench.client, raw.id)
    bench.say(
        f"batched {n} in batches of {batch}: agent {agent_rate:.0f}/s ({agent_tasks}; CPU-s {agent_cpu}), "
        f"raw decider {raw_rate:.0f}/s ({raw_tasks}; CPU-s {raw_cpu})"
    )
    await raw.terminate("benchmark done")
    return agent_rate, raw_rate


async def _decided_at_least(raw: WorkflowHandle[Any, Any], n: int) -> bool:
    return await raw.query(RawDecider.decided_count) >= n


# ----- 3. the fleet -----------------------------------------------------------------------------


@dataclass
class Fleet:
    agent_ids: list[str]
    sinks: list[WorkflowHandle[Any, Any]]
    rounds: int = 0


async def running_agents_since(client: Client, since: str, task_queue: str | None = None) -> int:
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND AiopsAgentState = '{AgentState.RUNNING.value}'"
    query += f" AND StartTime >= '{since}'"
    if task_queue:
        query += f" AND TaskQueue = '{task_queue}'"
    return (await client.count_workflows(query)).count


async def start_fleet(bench: Bench, m: int) -> Fleet:
    """``m`` running, idle agents and ``m`` idle no-op sinks (outside the clock)."""
    since = _now_iso()
    configs = [agent_config("bench_observer", runtime=bench.runtime) for _ in range(m)]
    await bounded([lambda c=c: bench.aiops.agents.start(c) for c in configs], bench.in_flight)
    await wait_until(lambda: _all_running(bench, since, m), poll=0.2)
    prefix = f"sink-{uuid.uuid4().hex[:8]}-"
    bench.counter.reset()
    sinks = await bounded(
        [
            lambda i=i: bench.client.start_workflow(
                RawFleetSink.run, id=f"{prefix}{i}", task_queue=bench.task_queue
            )
            for i in range(m)
        ],
        bench.in_flight,
    )
    await bench.counter.wait(m, poll=0.1)  # every sink's first task done
    await asyncio.sleep(2)  # all idle
    return Fleet([c.id for c in configs], sinks)


async def _all_running(bench: Bench, since: str, m: int) -> bool:
    return await running_agents_since(bench.client, since) >= m


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


async def fleet_round(bench: Bench, fleet: Fleet) -> tuple[float, float, float]:
    """One event to each idle agent through ``events.send`` (the intake update, ``in_flight`` at a
    time); the clock stops when every call has returned and the hooks have run, then every agent's
    state is confirmed (events_processed one more than before) outside the clock. Raw: one
    ``intake`` update to each idle no-op sink (like with like), then one ``ping`` signal each
    (done when the sinks' handlers have counted them). Returns events/s: agent, raw update, raw
    signal."""
    m = len(fleet.agent_ids)
    fleet.rounds += 1
    bench.counter.reset()
    cpu = stack_cpu(bench.worker_pid)
    started = time.monotonic()
    with profiled(bench.worker_pid, "fleet-agent"):
        await bounded(
            [lambda a=a: bench.aiops.events.send(a, event_payload(fleet.rounds)) for a in fleet.agent_ids],
            bench.in_flight,
        )
        await bench.counter.wait(m)
    agent_rate = m / (time.monotonic() - started)
    agent_cpu = cpu_since(cpu, bench.worker_pid)
    statuses = await bounded(
        [lambda a=a: bench.aiops.agents.status(a) for a in fleet.agent_ids], bench.in_flight
    )
    confirmed_in = time.monotonic() - started
    short = [s.agent_id for s in statuses if s.counters.events_processed != fleet.rounds]
    assert not short, f"{len(short)} agents did not record their event: {short[:3]}"

    bench.counter.reset()
    cpu = stack_cpu(bench.worker_pid)
    started = time.monotonic()
    with profiled(bench.worker_pid, "fleet-raw-update"):
        await bounded(
            [
                lambda s=s: s.execute_update(RawFleetSink.intake, {"events": [event_payload(fleet.rounds)]})
                for s in fleet.sinks
            ],
            bench.in_flight,
        )
        await bench.counter.wait(m)
    update_rate = m / (time.monotonic() - started)
    update_cpu = cpu_since(cpu, bench.worker_pid)

    bench.counter.reset()
    started = time.monotonic()
    await bounded(
        [lambda s=s: s.signal(RawFleetSink.ping, event_payload(fleet.rounds)) for s in fleet.sinks],
        bench.in_flight,
    )
    delivered = m / (time.monotonic() - started)
    await bench.counter.wait(m)
    signal_rate = m / (time.monotonic() - started)
    bench.say(
        f"fleet {m} x 1: agent {agent_rate:.1f}/s (all {m} states confirmed after {confirmed_in:.1f}s; "
        f"CPU-s {agent_cpu}), raw update {update_rate:.1f}/s (CPU-s {update_cpu}), "
        f"raw signal {signal_rate:.1f}/s (delivered at {delivered:.1f}/s)"
    )
    return agent_rate, update_rate, signal_rate


# ----- 4. history events per event ---------------------------------------------------------------


async def history_per_event(bench: Bench, k: int) -> tuple[float, float, float, float]:
    """History events one event adds to an idle agent (``events.send``: the intake update), averaged
    over ``k`` events, each sent once the last is recorded; beside an idle no-op sink taking the
    same event by update. Also both by signal (the agent's ``submit_event``: the Web UI's path).
    Returns (agent by update, raw by update, agent by signal, raw by signal)."""
    agent_id = await warm_agent(bench)
    handle = bench.aiops.agents.handle(agent_id)
    await asyncio.sleep(0.5)
    first = (await handle.describe()).raw_description.workflow_execution_info.history_length
    for i in range(k):
        await bench.aiops.events.send(agent_id, event_payload(i))
        await wait_until(lambda i=i: _processed_at_least(bench, agent_id, 2 + i))
    await asyncio.sleep(0.5)
    agent = await _added(handle, first)

    sink = await bench.client.start_workflow(
        RawFleetSink.run, id=f"sink-{uuid.uuid4().hex[:8]}", task_queue=bench.task_queue
    )
    await sink.execute_update(RawFleetSink.intake, {"events": [event_payload(-1)]})
    await asyncio.sleep(0.5)
    first_raw = (await sink.describe()).raw_description.workflow_execution_info.history_length
    for i in range(k):
        await sink.execute_update(RawFleetSink.intake, {"events": [event_payload(i)]})
    await asyncio.sleep(0.5)
    raw = await _added(sink, first_raw)
    first_raw = (await sink.describe()).raw_description.workflow_execution_info.history_length
    bench.counter.reset()
    for i in range(k):
        await sink.signal(RawFleetSink.ping, event_payload(i))
        await bench.counter.wait(i + 1)
    await asyncio.sleep(0.5)
    raw_signal = await _added(sink, first_raw)

    by_signal = await warm_agent(bench)
    handle_signal = bench.aiops.agents.handle(by_signal)
    await asyncio.sleep(0.5)
    first_signal = (await handle_signal.describe()).raw_description.workflow_execution_info.history_length
    for i in range(k):
        await handle_signal.signal(AgentMessages.submit_event, event_payload(i))
        await wait_until(lambda i=i: _processed_at_least(bench, by_signal, 2 + i))
    await asyncio.sleep(0.5)
    signal = await _added(handle_signal, first_signal)
    sides = {
        "agent (update)": agent,
        "raw (update)": raw,
        "agent (signal)": signal,
        "raw (signal)": raw_signal,
    }
    for name, (count, kinds) in sides.items():
        detail = ", ".join(f"{v / k:g} {t}" for t, v in sorted(kinds.items()))
        bench.say(f"history per event, {name}: {count / k:g} ({detail})")
    await sink.terminate("benchmark done")
    return agent[0] / k, raw[0] / k, signal[0] / k, raw_signal[0] / k


async def _added(handle: WorkflowHandle[Any, Any], after: int) -> tuple[int, dict[str, int]]:
    kinds: Tally[str] = Tally()
    async for e in handle.fetch_history_events():
        if e.event_id > after:
            kinds[EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()] += 1
    return sum(kinds.values()), dict(kinds)
