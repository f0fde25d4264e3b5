"""Metrics, traces, logs and readiness, observed the way an operator's tools would see them.

A real scrape of ``/metrics`` after real actions; a real OTLP/HTTP receiver
(decoding what the exporter sends with ``opentelemetry-proto``); JSON log
lines from a real run; ``/readyz`` while a real PostgreSQL stops and starts.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from activities.database.pool import open_pool
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus, ApprovalRequest
from aiops.health_server import HealthServer, polling_check, postgres_check, temporal_check
from aiops.logs import JsonFormatter
from aiops.metrics import create_telemetry, series
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.support.postgres_server import PostgresServer


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def fetch(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


@dataclass
class Observed:
    aiops: AiopsClient
    http: HealthServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"


@pytest_asyncio.fixture
async def observed(env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool) -> AsyncIterator[Observed]:
    """A worker whose client reports metrics to this test's own runtime and scrape target."""
    telemetry = create_telemetry()
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
    )
    worker = build_worker(client, task_queue, AgentActivities(client=client), pool=pool)
    http = HealthServer(
        {"temporal": temporal_check(client), "postgres": postgres_check(pool)}, telemetry.registry
    )
    await http.start("127.0.0.1", 0)
    async with worker:
        yield Observed(AiopsClient(client, task_queue, pool), http)
    await http.stop()


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for found, v in series(text, name) if all(found.get(k) == x for k, x in labels.items()))


async def test_a_scrape_after_real_actions_carries_framework_and_sdk_metrics(observed: Observed) -> None:
    aiops = observed.aiops
    config = agent_config("scripted", approval=team())
    await aiops.agents.start(config)
    low = event("alert", risk="low")
    await aiops.events.submit(config.id, [low, low, {"not": "an event"}])
    assert (
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, low.id))
    ).status == ActionStatus.VERIFIED
    _, pending, _ = await start_pending_action(aiops, config, "high")
    await aiops.approvals.approve(pending, "alice")
    await aiops.approvals.wait_for_action(pending)

    status, text = await fetch(f"{observed.base}/metrics")
    assert status == 200
    mine = {"agent_id": config.id, "agent_type": "scripted"}
    assert value(text, "aiops_events_total", outcome="received", **mine) == 3
    assert value(text, "aiops_events_total", outcome="deduplicated", **mine) == 1
    assert value(text, "aiops_events_total", outcome="rejected", **mine) == 1
    assert value(text, "aiops_events_total", outcome="processed", **mine) == 2
    assert value(text, "aiops_actions_total", status="verified", agent_type="scripted") == 2
    assert value(text, "aiops_actions_total", status="pending_approval", agent_type="scripted") == 1
    assert value(text, "aiops_approval_wait_seconds_count", risk_level="high", agent_type="scripted") == 1
    assert value(text, "aiops_action_duration_seconds_count", status="verified", agent_type="scripted") == 2
    assert value(text, "aiops_action_duration_seconds_bucket", le="+Inf", status="verified") == 2
    sdk = {name for name in (line.split("{")[0].split(" ")[0] for line in text.splitlines()) if name}
    assert any(n.startswith("temporal_") and n.endswith("_total") for n in sdk), sorted(sdk)[:20]
    assert any(n.startswith("temporal_") and n.endswith("_seconds_bucket") for n in sdk), sorted(sdk)[:20]


async def test_health_endpoints_answer(observed: Observed) -> None:
    assert await fetch(f"{observed.base}/healthz") == (200, "ok\n")
    status, body = await fetch(f"{observed.base}/readyz")
    assert status == 200 and json.loads(body) == {
        "ready": True,
        "checks": {"temporal": "ok", "postgres": "ok"},
    }
    assert (await fetch(f"{observed.base}/nowhere"))[0] == 404


async def test_readiness_flips_while_postgres_is_down(env: WorkflowEnvironment) -> None:
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    pool = await open_pool(server.url)
    running = True
    http = HealthServer(
        {
            "temporal": temporal_check(env.client),
            "postgres": postgres_check(pool),
            "polling": polling_check(lambda: running),
        }
    )
    await http.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{http.port}/readyz"
    try:
        assert (await fetch(url))[0] == 200
        await asyncio.to_thread(server.stop)
        status, body = await fetch(url)
        report = json.loads(body)
        assert status == 503 and report["ready"] is False
        assert report["checks"]["postgres"].startswith("failing") and report["checks"]["temporal"] == "ok"
        assert (await fetch(f"http://127.0.0.1:{http.port}/healthz"))[0] == 200, "alive, just not ready"
        await asyncio.to_thread(server.start)
        await eventually(lambda: fetch(url), lambda r: r[0] == 200, within=30)
        running = False
        status, body = await fetch(url)
        assert status == 503 and json.loads(body)["checks"]["polling"].startswith("failing")
    finally:
        await http.stop()
        await pool.close()
        await asyncio.to_thread(server.close)


# ----- traces and logs --------------------------------------------------------------------


class Receiver:
    """A real OTLP/HTTP trace receiver on a free port."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (trace id, span id, name)
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            received.append((span.trace_id.hex(), span.span_id.hex(), span.name))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


async def test_one_trace_links_the_client_call_the_workflows_and_their_activities(
    env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool, receiver: Receiver, json_logs: io.StringIO
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "aiops-test"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor(provider.get_tracer("aiops-test"))],
    )
    aiops = AiopsClient(client, task_queue, pool)
    config = agent_config("scripted", approval=team())
    low = event("alert", risk="low")
    action_id = aiops.approvals.action_id(config.id, low.id)
    async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
        await aiops.events.send(config.id, low, config=config)  # update-with-start (the intake update)
        assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
        _, pending, _ = await start_pending_action(aiops, config, "high")
        await aiops.approvals.signal(pending, ApprovalRequest(approver="oscar"))  # refused: logged
        await eventually(lambda: aiops.approvals.action(pending), lambda r: len(r.refused) == 1)
    assert provider.force_flush(10_000)
    provider.shutdown()

    names_by_trace: dict[str, set[str]] = {}
    for trace_id, _, name in receiver.spans:
        names_by_trace.setdefault(trace_id, set()).add(name)
    [trace_id] = [
        t for t, names in names_by_trace.items() if "StartUpdateWithStartWorkflow:AgentWorkflow" in names
    ]
    names = names_by_trace[trace_id]
    expected = {
        "RunWorkflow:AgentWorkflow",
        "RunActivity:start_agent",  # register and initialize, one local activity
        "RunActivity:start_action",  # the agent starts the action from its worker, eagerly
        "StartWorkflow:ActionWorkflow",  # by its client, in that activity's span
        "RunWorkflow:ActionWorkflow",
        "RunActivity:plan_action_here",  # the dry run, a local activity where the worker has the type
        "RunActivity:execute_action",
    }
    assert expected <= names, sorted(names)

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    executing = next(
        line
        for line in lines
        if line["message"].startswith("executing action") and line["action_id"] == action_id
    )
    assert executing["workflow_id"] == action_id and executing["run_id"]
    assert executing["agent_id"] == config.id and executing["event_id"] == low.id
    assert executing["activity_type"] == AgentActivities.execute_action.__name__
    assert executing["trace_id"] == trace_id, "the log line carries the trace it belongs to"
    refused = next(line for line in lines if line["message"].startswith("refused signal from oscar"))
    assert refused["workflow_id"] == pending and refused["run_id"]
    assert refused["agent_id"] == config.id and refused["action_id"] == pending
    assert refused["event_id"] == pending.split(":", 1)[1]


async def test_garbage_requests_get_an_answer_and_the_endpoint_stays_up(observed: Observed) -> None:
    async def raw(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", observed.http.port)
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        return answer

    assert (await raw(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await raw(b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400"), "HTTP/1.1 needs Host"
    post = b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert (await raw(post)).startswith(b"HTTP/1.1 405")
    # A request head over uvicorn's limit is refused with a 400, not read on and on (nor crashing).
    assert (await raw(b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert await fetch(f"{observed.base}/healthz") == (200, "ok\n")
