"""Critical work first: a high-risk action's event → waiting-for-approval, with and without a storm.

    python bench/scenario_priority.py [--storm 10000] [--agents 10] [--samples 5] [--own-queue-only]

One dev server (in memory) and the bench worker in its own process. The figure: from
``events.send`` of an event whose action is high risk (``bench_approval``, task-queue priority 2)
until its action's record says ``pending_approval``; first ``--samples`` times on a quiet
worker, then the same while ``--storm`` low-risk events (``bench_auto``: each becomes a low
action, priority 4, that plans, executes and verifies at once) are sent to ``--agents`` agents
through ``events.send_many``. The storm shares the task queue and the one worker with the
sample; the action's workflow tasks and activities wait behind none of the low ones.

Then the same storm into the sample's own agent's queue (``bench_triage``: a critical event
proposes a high-risk action, a low one nothing; ``runtime.max_queue`` 20,000 so the storm
fits): the agent decides its queue by severity, so a critical event is decided next whatever
waits. Beside it, one sample sent with severity ``low``, which waits behind the storm (what
every event did while the queue was first come, first served).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from bench.bench_common import event_payload, wait_until
from bench.stack import bench_stack
from tests.helpers import agent_config


async def sample(aiops: AiopsClient, agent_id: str, severity: str = "critical") -> float:
    """Seconds from sending one event to its action waiting for approval."""
    event = {**event_payload(0, prefix=severity), "severity": severity, "data": {"sample": True}}
    action_id = aiops.approvals.action_id(agent_id, event["id"])
    started = time.monotonic()
    await aiops.events.send(agent_id, event)

    async def waiting() -> bool:
        try:
            return (await aiops.approvals.action(action_id)).status == ActionStatus.PENDING_APPROVAL
        except Exception:  # not started yet
            return False

    await wait_until(waiting, within=600, poll=0.02)
    return time.monotonic() - started


async def storm(aiops: AiopsClient, agent_ids: list[str], n: int) -> None:
    per_agent = n // len(agent_ids)

    async def one(i: int, agent_id: str) -> None:
        events = [{**event_payload(j, prefix=f"low{i}"), "severity": "low"} for j in range(per_agent)]
        await aiops.events.send_many(agent_id, events)

    await asyncio.gather(*(one(i, a) for i, a in enumerate(agent_ids)))


async def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument(
        "--own-queue-only", action="store_true", help="only the storm in the sample's own agent"
    )
    args = parser.parse_args(argv)
    async with bench_stack(in_memory=True) as stack:
        aiops = AiopsClient(stack.env.client, stack.task_queue)
        if args.own_queue_only:
            own = await same_queue(aiops, args)
            print_own(args, own)
            return own
        critical = agent_config("bench_approval")
        await aiops.agents.start(critical)
        lows = [agent_config("bench_auto") for _ in range(args.agents)]
        for config in lows:
            await aiops.agents.start(config)
        await sample(aiops, critical.id)  # warm-up
        quiet = [await sample(aiops, critical.id) for _ in range(args.samples)]
        started = time.monotonic()
        sending = asyncio.create_task(storm(aiops, [c.id for c in lows], args.storm))
        await asyncio.sleep(2)  # the storm is under way: its actions fill the queue
        loaded = [await sample(aiops, critical.id) for _ in range(args.samples)]
        await sending
        sent_in = time.monotonic() - started
        statuses = [await aiops.agents.status(c.id) for c in lows]
        proposed = sum(s.counters.actions_proposed for s in statuses)
        figures = {"quiet_p50": statistics.median(quiet), "storm_p50": statistics.median(loaded)}
        print(
            f"high-risk event → waiting for approval, p50 of {args.samples}: "
            f"quiet {figures['quiet_p50'] * 1000:.0f} ms "
            f"(max {max(quiet) * 1000:.0f}), during a storm of {args.storm} low events to {args.agents} "
            f"agents {figures['storm_p50'] * 1000:.0f} ms (max {max(loaded) * 1000:.0f}); the storm was sent "
            f"in {sent_in:.1f} s and had proposed {proposed} low actions when the samples ended",
            flush=True,
        )
        own = await same_queue(aiops, args)
    print_own(args, own)
    return {**figures, **own}


def print_own(args: argparse.Namespace, own: dict[str, float]) -> None:
    print(
        f"the same storm into the sample's own agent ({args.storm} low events queued ahead of it): "
        f"critical → waiting for approval p50 {own['own_quiet_p50'] * 1000:.0f} ms quiet, "
        f"{own['own_storm_p50'] * 1000:.0f} ms (max {own['own_storm_max'] * 1000:.0f}) with "
        f"{own['queued']:.0f} events queued; a low-severity sample behind the storm "
        f"{own['low_behind'] * 1000:.0f} ms",
        flush=True,
    )


async def same_queue(aiops: AiopsClient, args: argparse.Namespace) -> dict[str, float]:
    """The storm and the samples in one agent's queue: critical first, then the low sample."""
    triage = agent_config("bench_triage", runtime={"max_queue": 20_000})
    await aiops.agents.start(triage)
    await sample(aiops, triage.id)  # warm-up
    quiet = [await sample(aiops, triage.id) for _ in range(args.samples)]
    # Paused while the storm comes in, until the queue is full (1 MB: about 6,500 of these events;
    # the rest wait in the sender, which sends again as room frees): the worst case.
    await aiops.agents.pause(triage.id)
    sending = asyncio.create_task(storm(aiops, [triage.id], args.storm))
    queued, steady = 0, 0
    while not sending.done() and steady < 3:
        await asyncio.sleep(1)
        now = (await aiops.agents.status(triage.id)).queue_length
        steady, queued = (steady + 1 if now == queued else 0), now
    await aiops.agents.resume(triage.id)
    # Sent together: the low one waits behind the storm, the critical ones go ahead of it.
    behind = asyncio.create_task(sample(aiops, triage.id, severity="low"))
    loaded = [await sample(aiops, triage.id) for _ in range(args.samples)]
    low_behind = await behind
    await sending
    return {
        "own_quiet_p50": statistics.median(quiet),
        "own_storm_p50": statistics.median(loaded),
        "own_storm_max": max(loaded),
        "queued": queued,
        "low_behind": low_behind,
    }


if __name__ == "__main__":
    asyncio.run(main())
