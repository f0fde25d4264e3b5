"""The targets of issues 11 and 30, measured: every figure beside its raw Temporal counterpart.

    python bench/targets.py [--repeat 5] [--quick] [--only storm,batched,...] [--postgres] [--codec]
                            [--raw-sandboxed]

One dev server with a database file, the bench worker in its own process, the load from this
one; ratios are taken within one run and reported as min / median / max over ``--repeat`` runs
(default 5). The raw ceilings run outside Temporal's sandbox, the way this project runs its own
workflows (``workflows/sandbox.py``), so each ratio is against the cheapest raw counterpart;
``--raw-sandboxed`` runs them in the sandbox (the SDK's default) for the older comparison. The
output says which ceiling each run used.
What each clock measures:

1. storm: ``--storm`` events (100,000) to one warm agent, flat out through the facade, once as
   single ``events.send`` calls all at once and once as ``events.send_many`` batches of 100 all at once.
   Exact when the agent's state (``status``: events_received, events_processed, rejected,
   deduplicated, queue) shows every event taken once and decided once, no workflow task of any
   run failed or timed out and, with ``--postgres``, one audit row per event landed.
2. batched: ``--events`` (20,000) events in intake updates of 100, 8 in flight (the facade's
   gate), from the first send until the agent's state shows them all processed; raw: a workflow
   taking the same batches by the same kind of update and deciding each batch with one local
   activity, until its query shows them all decided. Target: agent / raw >= 0.8 in every run.
3. fleet: ``--agents`` (1,000) running, idle agents get one event each through ``events.send``
   (50 in flight) until every call returned and every hook ran (each agent's state is then
   confirmed, outside the clock: events_processed one more than before, for every agent); raw:
   as many idle no-op workflows (every first task done before any clock starts) get one event
   each by update (like with like: the same delivery, until every update returned) and, for
   reference, by signal (until every handler ran). Target: agent / raw update >= 0.8 in every run.
4. history: history events one event adds to an idle agent (intake update), read from its
   history; raw: an idle no-op workflow taking the event by update. Target: agent <= 6.
4s. senders: ``--sender-events`` (20,000) events to one warm agent from ``--senders`` (1,000)
   independent senders: each its own ``AiopsClient``, sending its share one ``events.send`` at a
   time, so nothing is merged on the client and every event is its own intake update
   (``bench/scenario_senders.py``); exact like the storm. Raw: a ``RawDecider`` fed by as many
   senders, one update per event, with the facade's backoff on the server's refusals.
   Target: agent / raw >= 0.8.
5. starts: ``--starts`` (500) agents from ``agents.start`` to RUNNING, beside bare workflows from
   start to their first task done, 50 in flight each. Target: agent / bare >= 0.8.
6. idle: ``--idle-agents`` (10,000) idle agents in one fresh worker, beside as many bare idle
   workflows in another: worker RSS growth per workflow (from /proc), all running, the cache
   sized above them. Target: agent / bare <= 1.5. Repeated ``--idle-repeat`` times (1: it takes
   minutes). ``bench/idle_memory.py`` breaks the agent's share down by component (tracemalloc).
7. event → execute: ``events.send`` to the start of the auto-approved action's execute activity,
   beside raw signal → activity (samples interleaved). Target: p50 and p99 <= 2.0x.
8. approval → execute: ``bench/approval_latency.py``'s samples. Target: p50 <= 1.2x.
9. health monitor pass: measured by ``bench/health_monitor.py`` (not run here).

``--quick`` runs every scenario tiny, once (a CI smoke: it checks the table, not the speed).
``--codec`` runs everything twice, payload encryption off then on (docs/encryption.md: every
payload sealed with AES-256-GCM by the load generator and the workers), each on a fresh stack,
and adds a table of the figures side by side (on / off of the medians, agent and raw).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.database.pool import open_pool
from aiops.client import AiopsClient
from bench import scenario_fleet, scenario_latency, scenario_senders, scenario_throughput
from bench.bench_common import Counter, Figure, table
from bench.scenario_throughput import Bench
from bench.stack import BenchStack, bench_stack

SCENARIOS = ["storm", "batched", "fleet", "history", "senders", "starts", "latency", "approval", "idle"]
QUICK = {
    "storm": 300,
    "events": 300,
    "agents": 10,
    "history_events": 2,
    "senders": 10,
    "sender_events": 200,
    "starts": 10,
    "idle_agents": 30,
    "samples": 3,
}


def figures() -> dict[str, Figure]:
    f = {
        "storm_single": Figure("1a storm, single send_event", "events/s", None, target_text="exact"),
        "storm_batched": Figure("1b storm, send_events batches", "events/s", None, target_text="exact"),
        "batched": Figure("2 batched events/s vs raw LA decider", "ev/s", 0.8, every_run=True),
        "fleet": Figure("3 fleet x 1 event vs raw no-op (update)", "ev/s", 0.8, every_run=True),
        "fleet_signal": Figure("3' fleet vs raw no-op (signal, info)", "ev/s", None),
        "history": Figure("4 history events per event, idle", "", 6, higher_is_better=False, absolute=True),
        "history_signal": Figure("4' same, by submit_event signal", "", None, higher_is_better=False),
        "senders": Figure("4s independent senders vs raw LA decider", "ev/s", 0.8, exact=True),
        "starts": Figure("5 agent start rate vs bare workflow", "/s", 0.8),
        "idle": Figure("6 idle RSS per agent vs bare workflow", "KB", 1.5, higher_is_better=False),
        "idle_starts": Figure("6' start rate while filling the worker (info)", "/s", None),
        "auto_p50": Figure("7 event -> execute (auto) p50", "ms", 2.0, higher_is_better=False),
        "auto_p99": Figure("7' event -> execute (auto) p99", "ms", 2.0, higher_is_better=False),
        "approval": Figure("8 approval -> execute p50", "ms", 1.2, higher_is_better=False),
        "health": Figure(
            "9 health monitor pass, 10,000 agents", "s", None, target_text="<= 2 s: bench/health_monitor.py"
        ),
    }
    return f


async def run(args: argparse.Namespace, codec: bool = False) -> dict[str, Figure]:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    runtime = {}
    if args.max_events_per_run:
        runtime["max_events_per_run"] = args.max_events_per_run
    if args.batch_size:
        runtime["batch_size"] = args.batch_size
    handle, path = tempfile.mkstemp(prefix="aiops-bench-decided-")
    os.close(handle)
    out = figures()
    postgres = None
    if args.postgres:
        from tests.support.postgres_server import PostgresServer

        postgres = PostgresServer()
        postgres.start()
    try:
        worker_env = {"BENCH_COUNTER_FILE": path, "BENCH_CACHE": str(max(20_000, 3 * args.agents + 10_000))}
        if not args.raw_sandboxed:
            worker_env["BENCH_RAW_UNSANDBOXED"] = "1"
        url = postgres.url if postgres else None
        async with bench_stack(args.in_memory, worker_env, url, codec=codec) as stack:
            pool = await open_pool(url, max_size=4) if url else None
            aiops = AiopsClient(stack.env.client, stack.task_queue)
            bench = Bench(
                aiops,
                stack.env.client,
                stack.task_queue,
                Counter(path),
                runtime,
                pool,
                args.in_flight,
                stack.worker_pid,
            )
            db = "in-memory" if args.in_memory else "a database file"
            print(
                f"dev server with {db}; worker pid {stack.worker_pid} {'with' if pool else 'without'} "
                f"PostgreSQL; {args.repeat} run(s); {os.cpu_count()} cores; "
                f"payload encryption {'ON' if codec else 'off'}",
                flush=True,
            )
            print(f"ceiling: {ceiling(args)}", flush=True)
            await scenario_throughput.warm_agent(bench)
            await _scenarios(args, only, stack, bench, out)
            if pool is not None:
                await pool.close()
    finally:
        os.unlink(path)
        if postgres is not None:
            postgres.close()
    return out


async def _scenarios(
    args: argparse.Namespace, only: set[str], stack: BenchStack, bench: Bench, out: dict[str, Figure]
) -> None:
    fleet = auto = approval = None
    for run_number in range(1, args.repeat + 1):
        print(f"run {run_number} of {args.repeat}", flush=True)
        if "storm" in only:
            for mode in ("single", "batched"):
                print(f"  storm: {args.storm} events, {mode} ...", flush=True)
                result = await scenario_throughput.storm(bench, args.storm, mode)
                out[f"storm_{mode}"].add(result.rate)
                out[f"storm_{mode}"].checks.append(result.exact)
        if "batched" in only:
            print(f"  batched: {args.events} events in batches of 100 ...", flush=True)
            out["batched"].add(*await scenario_throughput.batched(bench, args.events))
        if "fleet" in only:
            if fleet is None:
                print(
                    f"  fleet: starting {args.agents} agents and {args.agents} no-op workflows ...",
                    flush=True,
                )
                fleet = await scenario_throughput.start_fleet(bench, args.agents)
            print(f"  fleet: {args.agents} x 1 event ...", flush=True)
            agent, update, signal = await scenario_throughput.fleet_round(bench, fleet)
            out["fleet"].add(agent, update)
            out["fleet_signal"].add(agent, signal)
        if "history" in only:
            print(f"  history: {args.history_events} events to idle workflows ...", flush=True)
            agent, raw, by_signal, raw_signal = await scenario_throughput.history_per_event(
                bench, args.history_events
            )
            out["history"].add(agent, raw)
            out["history_signal"].add(by_signal, raw_signal)
        if "senders" in only:
            print(f"  senders: {args.sender_events} events from {args.senders} senders ...", flush=True)
            result, raw_rate = await scenario_senders.independent_storm(
                bench, args.sender_events, args.senders
            )
            out["senders"].add(result.rate, raw_rate)
            out["senders"].checks.append(result.exact)
        if "starts" in only:
            print(f"  starts: {args.starts} agents, {args.starts} bare workflows ...", flush=True)
            out["starts"].add(*await scenario_fleet.start_rate(bench, args.starts))
        if "latency" in only:
            print(f"  event -> execute: {args.samples} samples each ...", flush=True)
            auto = auto or await scenario_latency.auto_agent(bench)
            p50, p99, raw50, raw99 = await scenario_latency.event_to_execute(bench, auto, args.samples)
            out["auto_p50"].add(p50 * 1000, raw50 * 1000)
            out["auto_p99"].add(p99 * 1000, raw99 * 1000)
        if "approval" in only:
            print(f"  approval -> execute: {args.samples} samples each ...", flush=True)
            approval = approval or await scenario_latency.approval_agent(bench)
            p50, raw50 = await scenario_latency.approval_to_execute(bench, *approval, args.samples)
            out["approval"].add(p50 * 1000, raw50 * 1000)
        if "idle" in only and run_number > args.repeat - args.idle_repeat:  # the last runs: slow
            print(f"  idle: {args.idle_agents} agents and {args.idle_agents} bare workflows ...", flush=True)
            agent, bare, agent_rate, bare_rate = await scenario_fleet.idle_rss(stack, bench, args.idle_agents)
            out["idle"].add(agent, bare)
            out["idle_starts"].add(agent_rate, bare_rate)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every scenario tiny, once: a smoke run")
    parser.add_argument("--repeat", type=int, default=None, help="runs (default 5; 1 with --quick)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of {','.join(SCENARIOS)}")
    parser.add_argument("--storm", type=int, default=100_000, help="events of the storm (each mode)")
    parser.add_argument("--events", type=int, default=20_000, help="events of the batched comparison")
    parser.add_argument("--agents", type=int, default=1000, help="agents of the fleet")
    parser.add_argument("--history-events", type=int, default=5)
    parser.add_argument("--senders", type=int, default=1000, help="independent senders of the senders storm")
    parser.add_argument("--sender-events", type=int, default=20_000, help="events of the senders storm")
    parser.add_argument("--starts", type=int, default=500, help="agents (and bare workflows) started")
    parser.add_argument("--idle-agents", type=int, default=10_000)
    parser.add_argument("--idle-repeat", type=int, default=1, help="runs of the idle scenario (slow)")
    parser.add_argument(
        "--samples",
        type=int,
        default=200,
        help="latency samples per run and side (200: the p99 is the third largest, with 50 the largest)",
    )
    parser.add_argument("--in-flight", type=int, default=50, help="concurrent calls of the fleet and starts")
    parser.add_argument("--postgres", action="store_true", help="a PostgreSQL audit log (rows counted)")
    parser.add_argument(
        "--raw-sandboxed",
        action="store_true",
        help="the raw workflows in Temporal's sandbox (the SDK's default; the framework's own run outside "
        "it, and so do the raw ones by default)",
    )
    parser.add_argument("--raw-unsandboxed", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--in-memory", action="store_true", help="the dev server without a database file")
    parser.add_argument(
        "--codec",
        action="store_true",
        help="run twice, payload encryption off then on, and compare (docs/encryption.md)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override runtime.batch_size")
    parser.add_argument(
        "--max-events-per-run", type=int, default=None, help="override runtime.max_events_per_run"
    )
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.raw_sandboxed and args.raw_unsandboxed:
        parser.error("--raw-sandboxed and --raw-unsandboxed contradict each other")
    return args


def ceiling(args: argparse.Namespace) -> str:
    """Which raw ceiling every ratio of this run is taken against."""
    if args.raw_sandboxed:
        return (
            "raw workflows IN Temporal's sandbox (--raw-sandboxed; the framework's own run outside it, "
            "so these ratios flatter the framework)"
        )
    return "raw workflows outside Temporal's sandbox, as the framework runs its own (workflows/sandbox.py)"


def codec_table(off: dict[str, Figure], on: dict[str, Figure]) -> str:
    """figure | agent off | agent on | on/off | raw off | raw on | on/off (medians)."""

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.4g}" if values else "-"

    def ratio(a: list[float], b: list[float]) -> str:
        return (
            f"{statistics.median(b) / statistics.median(a):.2f}" if a and b and statistics.median(a) else "-"
        )

    rows = [("figure (medians)", "agent off", "agent on", "on/off", "raw off", "raw on", "on/off")]
    for key, before in off.items():
        after = on[key]
        if not before.agent and not after.agent:
            continue
        rows.append(
            (
                f"{before.name} [{before.unit}]" if before.unit else before.name,
                median(before.agent),
                median(after.agent),
                ratio(before.agent, after.agent),
                median(before.raw),
                median(after.raw),
                ratio(before.raw, after.raw),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.monotonic()
    out = await run(args)
    print(
        f"\nsummary ({args.repeat} run(s), {time.monotonic() - started:.0f}s; agent and raw: "
        "min / median / max; met? judges the median, or every run where the target says so)"
    )
    print(f"ratios against: {ceiling(args)}")
    print(table(list(out.values())))
    if args.codec:
        sealed = await run(args, codec=True)
        print("\nsummary with payload encryption ON (AES-256-GCM codec in the client and the workers)")
        print(table(list(sealed.values())))
        print("\npayload encryption: on beside off (on/off > 1 is more for rates, slower for times)")
        print(codec_table(out, sealed))


if __name__ == "__main__":
    asyncio.run(main())
