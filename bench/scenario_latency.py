"""Latency scenarios: event → execute start of an auto-approved action, and approval → execute
start (``approval_latency.py``'s samples), each beside the raw signal → activity, interleaved."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from aiops.contracts.agent import agent_workflow_id
from aiops.contracts.config import ApprovalSettings, Approver
from bench import worker_timeline
from bench.approval_latency import ALICE, DISPATCH, approval_sample, raw_sample
from bench.bench_common import percentile, profiled
from bench.scenario_throughput import Bench
from tests.helpers import agent_config


async def timeline(bench: Bench, workflow_id: str, since: float) -> str:
    """The workflow's history events after ``since`` (epoch seconds), as ``+ms type``."""
    steps = []
    async for e in bench.client.get_workflow_handle(workflow_id).fetch_history_events():
        at = e.event_time.ToDatetime(tzinfo=UTC).timestamp()
        if at >= since - 0.001:
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()
            steps.append(f"+{(at - since) * 1000:.0f} {name}")
    return ", ".join(steps)


LAST: dict[str, object] = {}
# Every sample of the run, for ``steps``: (sent, action id, execute scheduled, execute body start).
SAMPLES: list[tuple[float, str, float, float]] = []

AGENT_STEPS = {
    "workflow_task_scheduled": "agent task scheduled",
    "workflow_task_started": "agent task started",
    "workflow_task_completed": "agent task completed",
    "start_child_workflow_execution_initiated": "child start initiated",
    "child_workflow_execution_started": "agent saw child started",
}
ACTION_STEPS = {
    "workflow_execution_started": "action started",
    "workflow_task_scheduled": "action task scheduled",
    "workflow_task_started": "action task started",
    "workflow_task_completed": "action task completed",
}


def _name(e: HistoryEvent) -> str:
    return EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower()


def _at(e: HistoryEvent) -> float:
    return e.event_time.ToDatetime(tzinfo=UTC).timestamp()


async def steps(bench: Bench, agent_id: str) -> str:
    """The median offset (ms after ``events.send``) of each step on the way to execute, over the
    run's samples: the first of each kind of event after the send, in the agent's history (until
    the next sample) and in the action's, then the execute activity's body start."""
    offsets: dict[str, list[float]] = {}
    agent_events = [
        e async for e in bench.client.get_workflow_handle(agent_workflow_id(agent_id)).fetch_history_events()
    ]
    for i, (sent, action_id, scheduled, body) in enumerate(SAMPLES):
        until = SAMPLES[i + 1][0] if i + 1 < len(SAMPLES) else float("inf")
        seen: dict[str, float] = {}
        for e in agent_events:
            label = AGENT_STEPS.get(_name(e))
            if label and "agent saw child started" in seen and label.startswith("agent task"):
                label = label.replace("agent task", "agent's next task")  # the one the child start woke
            if label and label not in seen and sent - 0.001 <= _at(e) < until:
                seen[label] = _at(e)
        async for e in bench.client.get_workflow_handle(action_id).fetch_history_events():
            label = ACTION_STEPS.get(_name(e))
            if label and label not in seen:
                seen[label] = _at(e)
        seen["execute scheduled (its attempt's clock)"] = scheduled
        seen["execute body started"] = body
        for label, at in seen.items():
            offsets.setdefault(label, []).append((at - sent) * 1000)
    ordered = sorted(offsets.items(), key=lambda item: statistics.median(item[1]))
    return ", ".join(f"+{statistics.median(v):.0f} {label}" for label, v in ordered)


async def auto_sample(bench: Bench, agent_id: str) -> float:
    """Seconds from ``events.send`` (the facade's intake update) to the start of the execute
    activity of the auto-approved action the event proposes (its body reports ``time.time()``)."""
    event_id = f"e-{uuid.uuid4().hex}"
    await asyncio.sleep(0.2)  # idle, as an agent is when an alert comes
    sent = time.time()
    await bench.aiops.events.send(agent_id, {"id": event_id, "type": "alert", "source": "web-1"})
    record = await bench.aiops.approvals.wait_for_action(bench.aiops.approvals.action_id(agent_id, event_id))
    assert record.result is not None, f"action of {event_id} has no result: {record.status}"
    action_id = bench.aiops.approvals.action_id(agent_id, event_id)
    LAST.update(agent_id=agent_id, action_id=action_id, sent=sent)
    data = record.result.data
    SAMPLES.append((sent, action_id, float(data["scheduled_at"]), float(data["started_at"])))
    return float(record.result.data["started_at"]) - sent


async def event_to_execute(bench: Bench, agent_id: str, samples: int) -> tuple[float, float, float, float]:
    """p50 and p99 (seconds) of the agent's event → execute and of raw signal → activity."""
    agent, raw = [], []
    SAMPLES.clear()
    raw_dispatch = len(DISPATCH["raw"])
    with profiled(bench.worker_pid, "latency"):  # both sides: the raw one is a small share
        for _ in range(samples):
            agent.append(await auto_sample(bench, agent_id))
            raw.append(await raw_sample(bench.client, bench.task_queue))
    result = statistics.median(agent), percentile(agent, 0.99), statistics.median(raw), percentile(raw, 0.99)
    p50, p99, raw50, raw99 = (v * 1000 for v in result)
    bench.say(
        f"event → execute, {samples} samples: agent p50 {p50:.1f} ms p99 {p99:.1f} ms; "
        f"raw signal → activity p50 {raw50:.1f} ms p99 {raw99:.1f} ms"
    )
    sent = float(LAST["sent"])  # type: ignore[arg-type]
    bench.say(f"  last sample, the agent: {await timeline(bench, agent_workflow_id(agent_id), sent)}")
    bench.say(f"  last sample, its action: {await timeline(bench, str(LAST['action_id']), sent)}")
    bench.say(f"  median steps: {await steps(bench, agent_id)}")
    if os.environ.get(worker_timeline.ENV):  # the worker's own clock: bench/worker_timeline.py
        path = Path(os.environ[worker_timeline.ENV])
        bench.say(f"  in the worker, median: {worker_timeline.steps(path, agent_id, SAMPLES)}")
    dispatch = statistics.median(b - a for _, _, a, b in SAMPLES) * 1000
    raw_side = statistics.median(DISPATCH["raw"][raw_dispatch:]) * 1000
    bench.say(f"  activity scheduled → body p50: execute {dispatch:.1f} ms, raw {raw_side:.1f} ms")
    return result


async def auto_agent(bench: Bench) -> str:
    config = agent_config("bench_auto", runtime=bench.runtime)
    await bench.aiops.agents.start(config)
    await auto_sample(bench, config.id)  # warm-up
    await raw_sample(bench.client, bench.task_queue)
    return config.id


async def approval_agent(bench: Bench) -> tuple[str, object]:
    alice = Approver(name="alice", roles=["sre"], public_key=ALICE.public_key())
    config = agent_config("bench_approval", approval=ApprovalSettings(approvers=[alice]))
    await approval_sample(bench.aiops, config.id, config)  # warm-up
    await raw_sample(bench.client, bench.task_queue)
    return config.id, config


async def approval_to_execute(
    bench: Bench, agent_id: str, config: object, samples: int
) -> tuple[float, float]:
    """p50 (seconds) of approval → execute (``approval_latency.approval_sample``) and raw."""
    agent, raw = [], []
    for _ in range(samples):
        agent.append(await approval_sample(bench.aiops, agent_id, config))
        raw.append(await raw_sample(bench.client, bench.task_queue))
    result = statistics.median(agent), statistics.median(raw)
    bench.say(
        f"approval → execute, {samples} samples: agent p50 {result[0] * 1000:.1f} ms "
        f"p99 {percentile(agent, 0.99) * 1000:.1f} ms; raw p50 {result[1] * 1000:.1f} ms "
        f"p99 {percentile(raw, 0.99) * 1000:.1f} ms"
    )
    return result
