"""The worker process: environment configuration, graceful shutdown, and refusing a bare namespace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent_activities import AgentActivities
from agents.registry import register_worker_plugin
from agents.services import framework_services, install_services
from aiops.client import AiopsClient
from aiops.connection import connect_settings
from aiops.contracts.action import ActionStatus
from aiops.runtime.worker_build import build_worker
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, event, eventually
from tests.support.postgres_server import PostgresServer, free_port
from tests.support.processes import ROOT, worker_process
from tests.test_observability import fetch, value


def test_settings_come_from_the_same_environment_as_the_temporal_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert connect_settings()["target_host"] == "localhost:7233"

    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "prod")
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret-key")
    settings = connect_settings()
    assert (settings["target_host"], settings["namespace"], settings["api_key"]) == (
        "temporal.example:7233", "prod", "secret-key",
    )  # fmt: skip
    assert settings["tls"] is True, "an API key implies TLS, as for the temporal CLI"

    profile = tmp_path / "temporal.toml"
    profile.write_text('[profile.cloud]\naddress = "ns.acct.tmprl.cloud:7233"\nnamespace = "ns.acct"\n')
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    settings = connect_settings()
    assert (settings["target_host"], settings["namespace"]) == ("ns.acct.tmprl.cloud:7233", "ns.acct")
    assert connect_settings(address="127.0.0.1:1")["target_host"] == "127.0.0.1:1"


async def test_sigterm_lets_the_running_action_finish(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer
) -> None:
    config = agent_config("scripted")
    e = event("alert", risk="low", sleep=2)
    action_id = aiops.approvals.action_id(config.id, e.id)
    with worker_process(address, task_queue, "graceful", postgres.url) as process:
        await aiops.events.send(config.id, e, config=config)
        await eventually(
            lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.EXECUTING
        )
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 0
    history = [h async for h in aiops.approvals.action_handle(action_id).fetch_history_events()]
    completed = [h for h in history if h.HasField("activity_task_completed_event_attributes")]
    failed = [h for h in history if h.HasField("activity_task_failed_event_attributes")]
    assert len(completed) >= 2 and not failed, "plan and execute both completed on the stopping worker"


async def test_worker_refuses_a_namespace_without_the_search_attributes(address: str) -> None:
    created = await asyncio.to_thread(
        subprocess.run,
        [TEMPORAL_BIN, "operator", "namespace", "create", "--namespace", "bare", "--address", address],
        capture_output=True, text=True,
    )  # fmt: skip
    assert created.returncode == 0 or "already" in created.stderr.lower(), created.stderr
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "bare",
             "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "lacks the search attributes" in result.stderr
    assert "temporal operator search-attribute create --name AiopsAgentId --type Keyword" in result.stderr


async def test_worker_without_a_database_refuses_to_start_unless_told(address: str) -> None:
    environment = {**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONPATH": str(ROOT)}
    environment.pop("DATABASE_URL", None)
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "worker.py"], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "set DATABASE_URL" in result.stderr and "--no-database" in result.stderr


async def test_the_worker_process_serves_health_readiness_and_metrics(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer
) -> None:
    port = free_port()
    config = agent_config("scripted")
    e = event("alert", risk="low")
    with worker_process(address, task_queue, "observable", postgres.url, AIOPS_HTTP_PORT=str(port)):
        base = f"http://127.0.0.1:{port}"
        await aiops.events.send(config.id, e, config=config)
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id))
        assert await fetch(f"{base}/healthz") == (200, "ok\n")
        status, body = await fetch(f"{base}/readyz")
        assert status == 200
        assert json.loads(body)["checks"] == {"temporal": "ok", "polling": "ok", "postgres": "ok"}
        status, text = await fetch(f"{base}/metrics")
        assert status == 200
        assert value(text, "aiops_actions_total", agent_type="scripted", status="verified") == 1
        assert "temporal_request_total" in text or "temporal_workflow_completed_total" in text


async def test_two_workers_on_one_host_a_busy_port_is_one_line_or_a_free_port(
    address: str, task_queue: str, postgres: PostgresServer
) -> None:
    """The second worker on a host finds the health/metrics port taken: it says so in one line and
    exits 2, or, when asked (--http-port-fallback), serves on a free port. Both listen on 127.0.0.1."""
    port = free_port()
    environment = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DATABASE_URL": postgres.url,
        "AIOPS_HEALTH_EVERY": "0",
        "PYTHONPATH": str(ROOT),
        "AIOPS_LOG_FORMAT": "json",
    }
    environment.pop("AIOPS_HTTP_HOST", None)
    second = [sys.executable, "worker.py", "--task-queue", task_queue, "--http-port", str(port)]
    with worker_process(address, task_queue, "first", postgres.url, AIOPS_HTTP_PORT=str(port)):
        assert (await fetch(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        busy = await asyncio.to_thread(
            subprocess.run, second, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
        )
        assert busy.returncode == 2, busy.stderr
        lines = [line for line in (busy.stdout + busy.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, "one line, no traceback:\n" + "\n".join(lines)
        error = json.loads(lines[0])
        assert error["level"] == "error" and f"127.0.0.1:{port}" in error["message"]
        assert "in use" in error["message"] and "--http-port-fallback" in error["message"]

        fallback = subprocess.Popen(  # noqa: ASYNC220  (read line by line below)
            [*second, "--http-port-fallback"], cwd=ROOT, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert fallback.stdout is not None
            logged = []
            for line in await asyncio.to_thread(lambda: iter(fallback.stdout.readline, "")):
                logged.append(json.loads(line))  # JSON lines only: no plain-text lines in between
                if "worker ready" in logged[-1]["message"]:
                    break
            moved = next(entry for entry in logged if "is in use" in entry["message"])
            assert moved["level"] == "warning"
            serving = next(entry for entry in logged if entry["message"].startswith("health and metrics on"))
            other = int(serving["message"].split("http://127.0.0.1:", 1)[1].split(" ", 1)[0])
            assert other != port
            # Ready once every poller of the worker group runs (a moment after "worker ready").
            await eventually(lambda: fetch(f"http://127.0.0.1:{other}/readyz"), lambda r: r[0] == 200)
        finally:
            fallback.terminate()
            assert await asyncio.to_thread(fallback.wait, 60) == 0


async def activity_pollers(client: Client, queue: str) -> list[PollerInfo]:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return list(answer.pollers)


@activity.defn(name="plugin_probe")
async def plugin_probe() -> str:
    return "probe"


async def test_an_agent_types_plugin_worker_runs_only_where_that_type_is_served(
    client: Client, task_queue: str
) -> None:
    """``register_worker_plugin``: a worker serving the type builds the factory's worker with its
    own options and runs it beside the others; a worker serving other types never calls it. And
    building a worker installs the framework services agents ask for, over its client."""
    calls: list[dict[str, Any]] = []

    def probe_worker(client: Client, task_queue: str, **options: Any) -> Worker:
        calls.append(options)
        return Worker(client, task_queue=f"{task_queue}.probe", activities=[plugin_probe], **options)

    register_worker_plugin("plugin-probe", probe_worker)
    others = build_worker(client, f"{task_queue}-o", AgentActivities(client=client, agent_types=["recorder"]))
    assert others.extra == [] and calls == []

    install_services(None)
    group = build_worker(
        client, task_queue, AgentActivities(client=client, agent_types=["plugin-probe"]), identity="probe-1"
    )
    [extra] = group.extra
    assert extra.task_queue == f"{task_queue}.probe" and calls[0]["identity"] == "probe-1"
    assert framework_services().client is client
    async with group:
        pollers = await eventually(lambda: activity_pollers(client, extra.task_queue), bool)
        assert {p.identity for p in pollers} == {"probe-1"}
    served = AgentActivities(client=client, agent_types=["recorder"])
    forced = build_worker(client, f"{task_queue}-f", served, plugin_types=["plugin-probe"])
    assert [w.task_queue for w in forced.extra] == [f"{task_queue}-f.probe"]
