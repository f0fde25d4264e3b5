"""What a search attribute upsert in the approving task costs approval → execute, on bare workflows.

    python bench/upsert_probe.py [--samples 80] [--runs 2] [--variants raw,timer,timer+upsert,...]

The action's approval task cancels the approval's expiry timer, upserts the approvals count and
its status, and schedules execute; the raw probe only schedules its activity. Here the raw probe
(``SignalToActivityProbe``) runs beside ``ProbeWithUpsert`` variants that add those parts one at
a time (``bench/probe_workflow.py`` says what each variant does), interleaved, in the bench worker
on the dev server with a database file: nothing of the framework runs. Printed per variant: the
p50 from the signal to the activity's body, its ratio to the raw probe's, and the activity's
scheduled → body p50 (how long the server took to answer the completion that scheduled it).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.probe_workflow import ProbeWithUpsert, SignalToActivityProbe
from bench.stack import bench_stack

VARIANTS = "raw,timer,timer+upsert,timer+one,timer+after,timer+defer,timer+noop"


async def sample(client: Client, task_queue: str, variant: str) -> tuple[float, float]:
    """Seconds from the signal to the activity's body, and from its scheduling to its body."""
    workflow_id = f"probe-{uuid.uuid4()}"
    if variant == "raw":
        handle = await client.start_workflow(SignalToActivityProbe.run, id=workflow_id, task_queue=task_queue)
    else:
        handle = await client.start_workflow(
            ProbeWithUpsert.run, variant, id=workflow_id, task_queue=task_queue
        )
    await asyncio.sleep(0.2)  # idle, as a waiting action is when a person approves it
    sent = time.time()
    await handle.signal("approve", {"approver": "alice"})
    started, scheduled = await handle.result()
    return started - sent, started - scheduled


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=80, help="samples per run and variant")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--variants", default=VARIANTS)
    args = parser.parse_args()
    variants = args.variants.split(",")
    async with bench_stack(in_memory=False) as stack:
        client, task_queue = stack.env.client, stack.task_queue
        for variant in variants:  # warm-up
            await sample(client, task_queue, variant)
        for run in range(1, args.runs + 1):
            total: dict[str, list[float]] = {v: [] for v in variants}
            dispatch: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.samples):
                for variant in variants:
                    whole, answered = await sample(client, task_queue, variant)
                    total[variant].append(whole * 1000)
                    dispatch[variant].append(answered * 1000)
            raw = statistics.median(total["raw"]) if "raw" in total else None
            print(f"run {run}: {args.samples} samples per variant, interleaved", flush=True)
            for variant in variants:
                p50 = statistics.median(total[variant])
                ratio = f" ({p50 / raw:.2f}x raw)" if raw else ""
                print(
                    f"  {variant:<14} p50 {p50:5.1f} ms{ratio}   scheduled → body p50 "
                    f"{statistics.median(dispatch[variant]):.1f} ms",
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main())
