"""Latency from an approval signal to the start of the execute activity, beside the raw latency.

    python bench/approval_latency.py [--samples 100] [--runs 5] [--in-memory]

For each sample an action waits in approval; the clock starts when the client sends
the ``approve`` signal and stops when the agent's execute hook begins (its result
carries ``time.time()``). Raw: a bare workflow that starts one activity on a signal,
measured the same way on the same server in the same run, samples interleaved.
Target: p50 ratio <= 1.2. The worker runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from workflows.approval_token import generate_private_key, private_key_pem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import ApprovalSettings, Approver
from aiops.keys import KeyFile
from bench.probe_workflow import SignalToActivityProbe
from bench.stack import bench_stack
from tests.helpers import agent_config

DISPATCH: dict[str, list[float]] = {"approval": [], "raw": []}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# alice's key: the approval is a signed token the workflow verifies, as in production.
ALICE = KeyFile(approver="alice", private_key=private_key_pem(generate_private_key()).decode())


async def pending(aiops: AiopsClient, agent_id: str, config) -> str:
    """Send an event whose action waits for approval; its action id once it waits."""
    event_id = f"e-{uuid.uuid4().hex}"
    await aiops.events.send(agent_id, {"id": event_id, "type": "alert", "source": "web-1"}, config=config)
    action_id = aiops.approvals.action_id(agent_id, event_id)
    while True:
        try:
            if (await aiops.approvals.action(action_id)).status == ActionStatus.PENDING_APPROVAL:
                return action_id
        except Exception:
            pass
        await asyncio.sleep(0.02)


async def approval_sample(aiops: AiopsClient, agent_id: str, config) -> float:
    action_id = await pending(aiops, agent_id, config)
    await asyncio.sleep(0.2)  # idle, as a waiting action is when a person approves it
    signed = await aiops.approvals.token(action_id, ALICE)  # signed before the clock, as a person does
    sent = time.time()
    await aiops.approvals.signal(action_id, signed)  # the Web UI's path: a signal, fire and forget
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.result is not None
    data = record.result.data
    DISPATCH["approval"].append(data["started_at"] - data["scheduled_at"])
    return data["started_at"] - sent


async def raw_sample(client: Client, task_queue: str) -> float:
    handle = await client.start_workflow(
        SignalToActivityProbe.run, id=f"probe-{uuid.uuid4()}", task_queue=task_queue
    )
    await asyncio.sleep(0.2)
    sent = time.time()
    await handle.signal(SignalToActivityProbe.approve, {"approver": "alice"})
    started, scheduled = await handle.result()
    DISPATCH["raw"].append(started - scheduled)
    return started - sent


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100, help="samples per run")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median p50 ratio is the verdict")
    parser.add_argument("--in-memory", action="store_true")
    args = parser.parse_args()
    async with bench_stack(args.in_memory) as stack:
        env, task_queue = stack.env, stack.task_queue
        aiops = AiopsClient(env.client, task_queue)
        alice = Approver(name="alice", roles=["sre"], public_key=ALICE.public_key())
        config = agent_config("bench_approval", approval=ApprovalSettings(approvers=[alice]))
        await approval_sample(aiops, config.id, config)  # warm-up
        await raw_sample(env.client, task_queue)
        ratios = []
        for run in range(1, args.runs + 1):
            approval, raw = [], []
            DISPATCH["approval"].clear()
            DISPATCH["raw"].clear()
            print(f"run {run}: {args.samples} samples each, interleaved ...", flush=True)
            for _ in range(args.samples):
                approval.append(await approval_sample(aiops, config.id, config))
                raw.append(await raw_sample(env.client, task_queue))
            for name, values in (("approval", approval), ("raw", raw)):
                print(
                    f"  {name:<9} p50 {statistics.median(values) * 1000:6.1f} ms   "
                    f"p99 {percentile(values, 0.99) * 1000:6.1f} ms   "
                    f"(activity scheduled → body p50 {statistics.median(DISPATCH[name]) * 1000:.1f} ms)"
                )
            ratio = statistics.median(approval) / statistics.median(raw)
            p99_ratio = percentile(approval, 0.99) / percentile(raw, 0.99)
            print(f"  ratio     p50 {ratio:.2f}   p99 {p99_ratio:.2f}")
            ratios.append(ratio)
        median = statistics.median(ratios)
        verdict = "meets" if median <= 1.2 else "MISSES"
        print(
            f"p50 ratio over {args.runs} runs: median {median:.2f} ({verdict} 1.2), "
            f"range {min(ratios):.2f}-{max(ratios):.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
