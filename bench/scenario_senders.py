"""The storm from many independent senders: no client-side merging, beside the raw ceiling fed alike.

``events.send`` merges the concurrent sends of one client for one agent into intake updates of up
to 500 events (``aiops/client/events.py``, ``_Batcher``), so the storm's "single send" mode is a
few hundred updates, not one per event. Independent senders (many processes, hosts, webhooks) do
not merge: here each of ``senders`` concurrent tasks has its own ``AiopsClient`` (its own batcher
and in-flight gate) and sends its share one ``events.send`` at a time, awaiting each answer, so
every event is its own intake update. The server takes at most 10 in-flight updates per workflow;
what it refuses beyond that (RESOURCE_EXHAUSTED) the facade sends again with backoff.

The raw ceiling is fed the same way: ``senders`` tasks, one ``intake`` update per event to a
``RawDecider`` (it decides what has queued, up to the agent's batch size, with one local activity,
as the agent does), each refused update sent again with the facade's backoff (a random pause up
to 50 ms, the bound doubling to 2 s) and the same retryable errors. Both clocks run from the first
send until the workflow's state shows every event decided.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from aiops.client import AiopsClient
from aiops.client.events import BUSY_SIGNAL_SECONDS, INTAKE_RPC_TIMEOUT_SECONDS, RETRYABLE_RPC
from bench.bench_common import event_payload, profiled, wait_until
from bench.raw_workflows import RawDecider
from bench.scenario_throughput import Bench, StormResult, _judged, task_summary, warm_agent


def within(n: int) -> float:
    """How long a side may take to send ``n`` events before it is reported as not done (50/s at
    least): 1,000 concurrent update senders into one workflow kept a loaded dev server busy
    aborting updates, and no update was taken in 8 minutes."""
    return max(120.0, n / 50)


def _shares(n: int, senders: int) -> list[list[int]]:
    """Event numbers per sender: sender ``s`` sends ``s, s + senders, ...``."""
    return [list(range(s, n, senders)) for s in range(senders)]


async def independent_storm(bench: Bench, n: int, senders: int) -> tuple[StormResult, float]:
    """``n`` events to one warm agent from ``senders`` independent senders, then the same to a raw
    decider. Returns the agent's result (exact or not, events/s) and the raw events/s."""
    agent_id = await warm_agent(bench)
    before = (await bench.aiops.agents.status(agent_id)).counters
    shares = _shares(n, senders)
    events = [event_payload(i, "solo") for i in range(n)]
    clients = [AiopsClient(bench.client, bench.task_queue) for _ in range(senders)]

    async def agent_sender(client: AiopsClient, share: list[int]) -> list[Any]:
        answers: list[Any] = []
        for i in share:
            try:
                answers.append(await client.events.send(agent_id, events[i]))
            except Exception as err:  # judged below: a refused event makes the storm not exact
                answers.append(err)
        return answers

    bench.counter.reset()
    started = time.monotonic()
    with profiled(bench.worker_pid, "senders-agent"):
        try:
            per_sender = await asyncio.wait_for(
                asyncio.gather(*(agent_sender(c, share) for c, share in zip(clients, shares, strict=True))),
                within(n),
            )
        except TimeoutError:
            text = f"{senders} independent senders, {n}: not all sent within {within(n):.0f}s"
            bench.say(text)
            return StormResult(False, 0.0, text), await _raw_side(bench, n, senders, shares)
        result = await _judged(
            bench,
            agent_id,
            before,
            n,
            [a for answers in per_sender for a in answers],
            started,
            f"{senders} independent senders,",
        )
    raw_rate = await _raw_side(bench, n, senders, shares)
    bench.say(f"  raw decider fed by {senders} independent senders: {raw_rate:.0f} events/s")
    return result, raw_rate


async def _raw_side(bench: Bench, n: int, senders: int, shares: list[list[int]]) -> float:
    batch_size = int(bench.runtime.get("batch_size", 100))
    started_raw = await bench.client.start_workflow(
        RawDecider.run, batch_size, id=f"raw-senders-{uuid.uuid4().hex[:8]}", task_queue=bench.task_queue
    )
    raw = bench.client.get_workflow_handle(started_raw.id)  # whichever run is current (continue-as-new)
    await raw.execute_update(RawDecider.intake, {"events": [event_payload(-1)]})
    await wait_until(lambda: _decided(raw, 1))
    events = [event_payload(i, "solo-raw") for i in range(n)]
    retried = signalled = 0

    async def send(event: dict[str, Any], busy_until: list[float]) -> None:
        """One update, sent again on what the facade sends again, with its backoff; by signal
        when the server refused it an update slot, and for ``BUSY_SIGNAL_SECONDS`` after that
        (``busy_until``: the sender's), as the facade does."""
        nonlocal retried, signalled
        delay = 0.05
        by_signal = busy_until[0] > time.monotonic()
        while True:
            try:
                if by_signal:
                    await raw.signal(RawDecider.submit, [event])
                    signalled += 1
                    return
                await raw.execute_update(
                    RawDecider.intake,
                    {"events": [event]},
                    rpc_timeout=timedelta(seconds=INTAKE_RPC_TIMEOUT_SECONDS),
                )
                return
            except WorkflowUpdateRPCTimeoutOrCancelledError as err:
                if isinstance(err.__cause__, asyncio.CancelledError):  # the clock ran out: stop
                    raise asyncio.CancelledError() from err
            except RPCError as err:
                if err.status == RPCStatusCode.RESOURCE_EXHAUSTED and not by_signal:
                    by_signal = True
                    busy_until[0] = time.monotonic() + BUSY_SIGNAL_SECONDS
                    continue
                if not by_signal and err.status not in RETRYABLE_RPC:
                    raise
                by_signal = False
            retried += 1
            await asyncio.sleep(random.uniform(0, delay))  # the facade's full jitter
            delay = min(delay * 2, 2.0)

    async def sender(share: list[int]) -> None:
        busy_until = [0.0]
        for i in share:
            await send(events[i], busy_until)

    bench.counter.reset()
    started = time.monotonic()
    with profiled(bench.worker_pid, "senders-raw"):
        try:
            await asyncio.wait_for(asyncio.gather(*(sender(share) for share in shares)), within(n))
            await wait_until(lambda: _decided(raw, 1 + n), poll=0.01)
            rate = n / (time.monotonic() - started)
        except TimeoutError:
            bench.say(f"  raw: not all {n} sent within {within(n):.0f}s")
            rate = 0.0
    tasks = await task_summary(bench.client, raw.id)
    bench.say(f"  raw: {n} events, {signalled} by signal, {retried} sent again after a refusal; {tasks}")
    await raw.terminate("benchmark done")
    return rate


async def _decided(raw: WorkflowHandle[Any, Any], n: int) -> bool:
    return bool(await raw.query(RawDecider.decided_count) >= n)
