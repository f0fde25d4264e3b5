"""The gateway's cost: Alertmanager webhooks through ``aiops gateway`` beside the same events sent raw.

    python bench/gateway_throughput.py [--alerts 1000] [--per-request 50] [--in-flight 8]
                                       [--agents 100] [--latency-samples 100] [--in-memory]
                                       [--coalesce N] [--sender lean|httpx]

The dev server (a database file, like ``temporal-dev/``, unless ``--in-memory``), the
worker (``bench/bench_worker.py``), the gateway (``python -m aiops.cli gateway``, bearer
auth on) and this load generator are four processes, as in production.

For one agent and for ``--agents`` agents:

* **throughput**: ``--alerts`` alerts as Alertmanager webhook payloads (version 4) of
  ``--per-request`` alerts, ``--in-flight`` requests at a time. *accepted*/s counts until the
  last 200 (Temporal accepted every event); *delivered*/s until the agents' decision hook has
  seen them all (the worker counts decisions in a file, so no query disturbs the storm); the
  totals are then checked exactly against the agents' ``status`` counters. With many agents
  every payload mixes alerts for all of them (routes match an ``agent`` label), so the
  gateway splits each request into one ``events.submit`` batch per agent.
  **raw**: the same events (converted by the same code) sent by ``AiopsClient.events.send_many``
  in the same batches and concurrency: the ceiling the gateway stands on.
  Like with like: each side's input is ready before its clock starts (raw: the converted
  events; gateway: the webhook bodies already encoded as bytes, as Alertmanager holds them), so
  the gateway's clock holds its own parsing and conversion and not the load generator's JSON
  encoding. The load generator posts through a lean keep-alive HTTP/1.1 client (``Sender``;
  ``--sender httpx`` for httpx, which spends about 1.5 ms of CPU per request on the same two
  cores, inside the clock: Alertmanager's Go client costs next to nothing). The CPU seconds each
  process spent per path are printed beside the rates.
* **latency**: alerts one at a time; from the HTTP request (raw: the ``events.send_many`` call) to the
  agent's ``status`` counters showing the decision recorded; p50 and p99.

ratio = gateway / raw (the target in issue 13: the gateway adds < 10%, so >= 0.9 for rates and
<= 1.1 for latencies). ``--coalesce N``: the gateway's ``delivery.in_flight_per_agent`` (0: coalescing
off, each request its own intake update, as the raw path does).

Throughput runs ``--repeat`` times per scenario (raw, then gateway); each run is printed, and the
figure is each path's median rate. A stall that comes with the agents' age (continuing as new once
their history is long: all 100 agents at once, as they all got the same events) lands in the same
position every time, in one path's run; a median per path drops that run from either side.

An agent refuses what its queue cannot hold (``runtime.max_queue``, 1 MB of events) and both
paths send again later, so large ``--alerts`` to one agent measure that backpressure too.
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
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiops.client import AiopsClient
from aiops.contracts.models import SystemEvent
from aiops.gateway.alertmanager import WebhookPayload, alert_event
from aiops.gateway.routing import Route
from bench.observer_agent import read_count
from bench.stack import bench_stack
from tests.helpers import agent_config

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
COUNTER = [""]
LATENCY_SENDER_CPU: dict[str, float] = {}
REFUSALS: list[str] = []  # the first 503 answers' reasons, for the run's note


def payload(alerts: list[tuple[str, int]]) -> dict:
    """A webhook body with one alert per ``(agent id, n)``; every alert new (its own fingerprint)."""
    now = datetime.now(UTC).isoformat()
    return {
        "version": "4",
        "groupKey": '{}:{alertname="Bench"}',
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": "Bench"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Bench", "agent": agent, "instance": f"host-{n % 50}"},
                "annotations": {"summary": f"bench alert {n}"},
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.bench/graph",
                "fingerprint": uuid.uuid4().hex[:16],
            }
            for agent, n in alerts
        ],
    }


def encoded(body: dict) -> bytes:
    return json.dumps(body).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_processes(gateway_pid: int) -> dict[str, int]:
    """This benchmark's processes: load (this one), gateway, and its children (dev server, worker)."""
    found = {"load": os.getpid(), "gateway": gateway_pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if int(rest.split()[1]) == os.getpid() and int(stat.parent.name) != gateway_pid:
            found["server" if "temporal" in name else "worker"] = int(stat.parent.name)
    return found


def requests_for(agents: list[str], total: int, per_request: int) -> list[dict]:
    alerts = [(agents[n % len(agents)], n) for n in range(total)]
    return [payload(alerts[k : k + per_request]) for k in range(0, total, per_request)]


def raw_batches(body: dict) -> dict[str, list[SystemEvent]]:
    """What the gateway sends for ``body``: the same conversion, grouped by agent."""
    parsed = WebhookPayload.model_validate(body)
    batches: dict[str, list[SystemEvent]] = {}
    for alert in parsed.alerts:
        agent = alert.labels["agent"]
        route = Route(name=f"to-{agent}", agents=[agent])
        batches.setdefault(agent, []).append(alert_event(parsed, alert, route, "am"))
    return batches


async def wait_decided(baseline: int, target: int, within: float = 600) -> None:
    deadline = time.monotonic() + within
    while read_count(COUNTER[0]) - baseline < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {read_count(COUNTER[0]) - baseline}/{target} decided")
        await asyncio.sleep(0.005)


async def bounded(jobs: list, in_flight: int) -> None:
    semaphore = asyncio.Semaphore(in_flight)

    async def run(job):
        async with semaphore:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


class GatewayProcess:
    def __init__(
        self, address: str, task_queue: str, agents: list[str], folder: Path, coalesce: int | None = None
    ) -> None:
        routes = [{"name": f"to-{a}", "match": {"agent": a}, "agents": [a]} for a in agents]
        delivery: dict = {"attempts": 10, "timeout_seconds": 60}
        if coalesce is not None:
            delivery.update(coalesce=coalesce > 0, in_flight_per_agent=max(1, coalesce))
        config = {
            "version": 1,
            "sources": {
                "am": {
                    "auth": {"type": "bearer", "token": "env:BENCH_GATEWAY_TOKEN"},
                    "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
                }
            },
            "routes": routes,
            "limits": {"max_body_bytes": 16 * 1024 * 1024, "max_events_per_request": 10_000},
            "delivery": delivery,
        }
        self.config_file = folder / f"gateway-{uuid.uuid4().hex[:6]}.json"
        self.config_file.write_text(json.dumps(config))
        with tempfile.NamedTemporaryFile(delete=False) as f:
            self.log = Path(f.name)
        sock_port = _free_port()
        self.url = f"http://127.0.0.1:{sock_port}/v1/alertmanager/am"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiops.cli",
                "--task-queue",
                task_queue,
                "gateway",
                "--routes",
                str(self.config_file),
                "--port",
                str(sock_port),
                "--log-level",
                "INFO",  # one line per failed delivery attempt: retries() counts them
                "--reload-every",
                "0",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "TEMPORAL_ADDRESS": address,
                "BENCH_GATEWAY_TOKEN": TOKEN,
                "PYTHONPATH": str(ROOT),
            },
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    async def ready(self, http: httpx.AsyncClient) -> None:
        base = self.url.split("/v1/")[0]
        for _ in range(600):
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the gateway did not become ready:\n{self.log.read_text()[-2000:]}")

    def retries(self) -> int:
        """Delivery attempts the gateway made again so far (Temporal busy, the agent continuing as new)."""
        text = self.log.read_text(errors="replace")
        return text.count("failed (attempt") + text.count("refused (attempt")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.log.unlink(missing_ok=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Sender:
    """The load generator's HTTP client: keep-alive HTTP/1.1 connections writing a prepared request
    and reading the status, the headers and a Content-Length body (all the gateway sends).

    In production the sender is Alertmanager, whose Go client costs next to nothing per request; a
    Python client such as httpx spends about 1.5 ms of CPU per request (``--sender httpx`` to see
    it), on the same two cores and inside the latency clock, and would bill the gateway for it."""

    def __init__(self, url: str) -> None:
        address, _, self.path = url.removeprefix("http://").partition("/")
        host, _, port = address.partition(":")
        self.host, self.port, self.path = host, int(port), "/" + self.path
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {address}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        ).encode()

    async def post(self, body: bytes) -> tuple[int, str]:
        while self._idle:  # a kept-alive connection the gateway closed meanwhile (idle 30 s): the next
            reader, writer = self._idle.pop()
            if not reader.at_eof():
                break
            writer.close()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            text = (await reader.readexactly(length)).decode()
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status, text

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


class HttpxSender:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def post(self, body: bytes) -> tuple[int, str]:
        answer = await self.http.post(self.url, content=body, headers=HEADERS, timeout=120)
        return answer.status_code, answer.text

    def close(self) -> None:
        pass


async def post(sender: Sender | HttpxSender, body: bytes, retried: list[int]) -> None:
    """POST like Alertmanager (an encoded body): retry a 503 or a connection failure after a pause."""
    while True:
        try:
            status, text = await sender.post(body)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, httpx.HTTPError):
            status, text = 0, ""
        if status == 200:
            return
        if status not in (0, 503):
            raise RuntimeError(f"the gateway refused a request: {status} {text}")
        if len(REFUSALS) < 3:
            REFUSALS.append(text[:300] or "no answer (connection failed)")
        retried[0] += 1
        await asyncio.sleep(0.5)


async def throughput(
    aiops: AiopsClient,
    sender: Sender | HttpxSender,
    gateway: GatewayProcess,
    agents: list[str],
    args,
    order: tuple[str, ...],
) -> dict[str, tuple[float, float]]:
    """accepted/s and delivered/s, gateway and raw (in ``order``), on the same agents."""
    rates: dict[str, tuple[float, float]] = {}
    processes = stack_processes(gateway.process.pid)
    for path in order:
        await asyncio.sleep(1)  # let the previous run's tasks settle
        bodies = requests_for(agents, args.alerts, args.per_request)
        before = {a: (await aiops.agents.status(a)).counters.events_processed for a in agents}
        baseline = read_count(COUNTER[0])
        retried = [0]
        # Each side's input is ready before its clock: encoded webhooks, converted events.
        payloads = [encoded(b) for b in bodies] if path == "gateway" else []
        batches = [raw_batches(b) for b in bodies] if path == "raw" else []
        cpu = {name: cpu_seconds(pid) for name, pid in processes.items()}
        attempts_before = gateway.retries()
        started = time.monotonic()
        if path == "gateway":
            await bounded([lambda b=b, r=retried: post(sender, b, r) for b in payloads], args.in_flight)
        else:

            async def send(batch: dict[str, list[SystemEvent]]) -> None:
                await asyncio.gather(*(aiops.events.send_many(a, events) for a, events in batch.items()))

            await bounded([lambda b=b: send(b) for b in batches], args.in_flight)
        accepted = time.monotonic() - started
        await wait_decided(baseline, args.alerts, within=120)
        delivered = time.monotonic() - started
        used = {name: cpu_seconds(pid) - cpu[name] for name, pid in processes.items()}
        after = {a: (await aiops.agents.status(a)).counters.events_processed for a in agents}
        recorded = sum(after[a] - before[a] for a in agents)
        assert recorded == args.alerts, f"{path}: {recorded} decisions recorded for {args.alerts} alerts"
        rates[path] = (args.alerts / accepted, args.alerts / delivered)
        note = f" ({retried[0]} requests answered 503 and retried)" if retried[0] else ""
        if REFUSALS:
            print(f"    the first 503: {REFUSALS[0]}", flush=True)
            REFUSALS.clear()
        if path == "gateway" and gateway.retries() > attempts_before:
            note += f" ({gateway.retries() - attempts_before} deliveries retried by the gateway)"
        spent = " ".join(f"{name} {seconds:.2f}" for name, seconds in used.items())
        print(
            f"    {path:<8} {args.alerts} alerts in {delivered:.2f}s: every decision recorded once{note}; "
            f"CPU s: {spent}",
            flush=True,
        )
    return rates


async def latency(
    aiops: AiopsClient, sender: Sender | HttpxSender, agents: list[str], samples: int
) -> dict[str, list[float]]:
    """Seconds from the request to the decision in the agent's status counters, one alert at a time."""
    seen = {a: (await aiops.agents.status(a)).counters.events_processed for a in agents}
    results: dict[str, list[float]] = {"raw": [], "gateway": []}
    # CPU of this process while the request is under way: raw, the client facade's own work (part of
    # the raw path); gateway, the HTTP client's (the sender's, Alertmanager's in production).
    sender_cpu = LATENCY_SENDER_CPU
    sender_cpu.update(raw=0.0, gateway=0.0)
    for i in range(samples):
        for path in ("raw", "gateway"):  # interleaved, so both see the same server state
            agent = agents[i % len(agents)]
            body = payload([(agent, i)])
            batch, data = raw_batches(body), encoded(body)  # both inputs ready before the clock
            started, cpu = time.monotonic(), time.process_time()
            if path == "gateway":
                await post(sender, data, [0])
            else:
                await aiops.events.send_many(agent, batch[agent])
            sender_cpu[path] += time.process_time() - cpu
            while (await aiops.agents.status(agent)).counters.events_processed <= seen[agent]:
                pass
            results[path].append(time.monotonic() - started)
            seen[agent] += 1
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def scenario(aiops: AiopsClient, stack, http: httpx.AsyncClient, count: int, args) -> None:
    print(f"{count} agent{'s' if count > 1 else ''}: starting ...", flush=True)
    configs = [agent_config("bench_observer") for _ in range(count)]
    await bounded([lambda c=c: aiops.agents.start(c) for c in configs], 50)
    agents = [c.id for c in configs]
    for a in agents:
        while (await aiops.agents.status(a)).state != "running":
            await asyncio.sleep(0.05)
    address = stack.env.client.service_client.config.target_host
    gateway = GatewayProcess(address, stack.task_queue, agents, stack.folder, args.coalesce)
    sender: Sender | HttpxSender = (
        HttpxSender(http, gateway.url) if args.sender == "httpx" else Sender(gateway.url)
    )
    try:
        await gateway.ready(http)
        # warm both paths (connections, caches, the agents' first tasks)
        baseline = read_count(COUNTER[0])
        await post(sender, encoded(payload([(a, -1) for a in agents])), [0])
        warm = raw_batches(payload([(a, -2) for a in agents]))
        await asyncio.gather(*(aiops.events.send_many(a, events) for a, events in warm.items()))
        await wait_decided(baseline, 2 * count)
        runs = [
            await throughput(aiops, sender, gateway, agents, args, ("raw", "gateway"))
            for _ in range(args.repeat)
        ]
        lat = await latency(aiops, sender, agents, args.latency_samples)
    finally:
        sender.close()
        gateway.stop()
    for run in runs:
        (_, raw_del), (_, gw_del) = run["raw"], run["gateway"]
        ratio = gw_del / raw_del
        print(f"    run: delivered gateway {gw_del:8.1f}/s   raw {raw_del:8.1f}/s   ratio {ratio:5.2f}")
    # The median of each path's runs: a stall (the agent continuing as new once its history is long)
    # lands in the same run every time, so one path's outlier must not pick the other's figure.
    raw_acc, raw_del, gw_acc, gw_del = (
        statistics.median(run[path][i] for run in runs) for path in ("raw", "gateway") for i in (0, 1)
    )
    for name, gw, raw in (("accepted ", gw_acc, raw_acc), ("delivered", gw_del, raw_del)):
        print(f"  {name}  gateway {gw:8.1f} alerts/s   raw {raw:8.1f} events/s   ratio {gw / raw:5.2f}")
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        g, r = pct(lat["gateway"], q), pct(lat["raw"], q)
        print(f"  latency {name} gateway {g:8.1f} ms        raw {r:8.1f} ms        ratio {g / r:5.2f}")
    mean_gap = statistics.mean(lat["gateway"]) - statistics.mean(lat["raw"])
    print(f"  the gateway adds {mean_gap * 1000:.1f} ms per alert on average (HTTP, auth, parse, route)")
    cpu = {
        path: seconds / max(1, args.latency_samples) * 1000 for path, seconds in LATENCY_SENDER_CPU.items()
    }
    print(
        f"  load generator CPU per latency request: raw {cpu['raw']:.2f} ms (the client facade), "
        f"gateway {cpu['gateway']:.2f} ms (the HTTP client, Alertmanager's part)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument(
        "--sender",
        choices=("lean", "httpx"),
        default="lean",
        help="the load generator's HTTP client (lean: keep-alive HTTP/1.1 costing next to nothing, like "
        "Alertmanager's; httpx: about 1.5 ms of CPU per request on the same cores)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per scenario (median)")
    parser.add_argument(
        "--coalesce",
        type=int,
        default=None,
        help="the gateway's delivery.in_flight_per_agent; 0 turns coalescing off (default: the gateway's)",
    )
    args = parser.parse_args()
    handle, COUNTER[0] = tempfile.mkstemp(prefix="aiops-bench-decided-")
    os.close(handle)
    try:
        async with bench_stack(args.in_memory, {"BENCH_COUNTER_FILE": COUNTER[0]}) as stack:
            aiops = AiopsClient(stack.env.client, stack.task_queue)
            db = "in-memory" if args.in_memory else "database file"
            print(
                f"dev server ({db}); {args.alerts} alerts in webhooks of {args.per_request}, "
                f"{args.in_flight} requests in flight; {args.latency_samples} latency samples"
            )
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=args.in_flight + 4)) as http:
                for count in (1, args.agents):
                    await scenario(aiops, stack, http, count, args)
    finally:
        os.unlink(COUNTER[0])


if __name__ == "__main__":
    asyncio.run(main())
