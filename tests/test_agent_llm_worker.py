"""The llm agent in real worker processes (``python worker.py``), with a scripted model loaded in them.

Proves: a plain worker process that loads ``agents.llm`` runs diagnoses (it polls the diagnosis
queue too), exports the model's usage as Prometheus metrics and writes an ``llm_diagnosis`` audit
row; a worker without the llm agent never imports Pydantic AI; and a worker killed (SIGKILL) while a
diagnosis waits between two tool calls is replaced by another that finishes the diagnosis without
repeating the completed tool call or model request, counted by their side effects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agents.llm.contracts import diagnosis_workflow_id
from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord, ActionStatus
from tests.helpers import agent_config, event, eventually, team
from tests.support.llm_models import RESTART_ANSWER
from tests.support.llm_worker_models import DIR_ENV, GATED
from tests.support.postgres_server import PostgresServer, free_port
from tests.support.processes import ROOT, worker_process
from tests.support.prometheus_stub import prometheus_stub
from tests.test_observability import fetch, value

MODULES = "tests.support.agents_for_tests,agents.llm,tests.support.llm_worker_models"
CATALOG: list[dict[str, Any]] = [
    {
        "name": "restart-web",
        "action_type": "restart_service",
        "targets": ["service/*"],
        "parameters": {"reason": {"type": "string", "enum": ["oom", "hang"]}},
        "risk_floor": "medium",
    }
]
QUERY_A = 'up{job="checkout"}'
QUERY_B = 'container_memory_working_set_bytes{service="checkout"}'


def script(folder: Path, calls: list[tuple[str, dict[str, Any]]], gate: int | None = None) -> None:
    """What the ``gated`` model in the worker processes does (tests/support/llm_worker_models.py)."""
    (folder / "calls.json").write_text(json.dumps(calls))
    (folder / "answer.json").write_text(json.dumps(RESTART_ANSWER))
    if gate is not None:
        (folder / "gate").write_text(json.dumps(gate))


def llm_config(prometheus_url: str, decision_timeout: float = 120, **settings: Any) -> Any:
    return agent_config(
        "llm",
        settings={
            "endpoint": {"provider": "registered", "model": GATED},
            "catalog": CATALOG,
            "tools": {"prometheus": {"url": prometheus_url}, "agent_status": False},
            **settings,
        },
        runtime={"local_decisions": False, "decision_timeout_seconds": decision_timeout},
        approval=team(),
    )


def pending(record: ActionRecord) -> bool:
    return record.status == ActionStatus.PENDING_APPROVAL


async def test_a_worker_process_with_the_llm_agent_diagnoses_meters_and_audits(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    script(tmp_path, [("prometheus_query", {"query": QUERY_A})])
    port = free_port()
    async with prometheus_stub() as prometheus:
        env = {"AIOPS_AGENT_MODULES": MODULES, DIR_ENV: str(tmp_path), "AIOPS_HTTP_PORT": str(port)}
        with worker_process(address, task_queue, "llm-worker", postgres.url, **env):
            config = llm_config(prometheus.url)
            await aiops.agents.start(config)
            alert = event("alert", source="service/checkout", severity="high")
            await aiops.events.send(config.id, alert)
            action_id = aiops.approvals.action_id(config.id, alert.id)
            record = await eventually(lambda: aiops.approvals.action(action_id), pending, within=90)
            diagnosis = record.action.parameters["diagnosis"]
            assert [c["tool"] for c in diagnosis["tool_calls"]] == ["prometheus_query"]
            assert diagnosis["usage"] == {
                "requests": 2,
                "input_tokens": 200,
                "output_tokens": 40,
                "tool_calls": 1,
            }
            assert prometheus.count(QUERY_A) == 1

            labels = {"agent_id": config.id}
            text = ""

            async def scrape() -> str:
                nonlocal text
                text = (await fetch(f"http://127.0.0.1:{port}/metrics"))[1]
                return text

            await eventually(scrape, lambda t: value(t, "aiops_llm_diagnoses_total", **labels) == 1)
            model = {**labels, "model": f"registered:{GATED}"}
            assert value(text, "aiops_llm_diagnoses_total", **labels, outcome="proposal") == 1
            assert value(text, "aiops_llm_requests_total", **model) == 2
            assert value(text, "aiops_llm_tokens_total", **model, kind="input") == 200
            assert value(text, "aiops_llm_tokens_total", **model, kind="output") == 40
            assert (
                value(text, "aiops_llm_tool_calls_total", **labels, tool="prometheus_query", ok="true") == 1
            )
            assert (
                value(text, "aiops_llm_diagnosis_duration_seconds_count", **labels, outcome="proposal") == 1
            )

    rows = [r for r in await aiops.audit.rows(agent_id=config.id) if r.step == "llm_diagnosis"]
    assert len(rows) == 1
    detail = rows[0].detail
    assert rows[0].action_id == action_id and rows[0].actor == f"llm:registered:{GATED}"
    assert detail["outcome"] == "proposal" and detail["event_id"] == alert.id
    assert detail["usage"] == {"requests": 2, "input_tokens": 200, "output_tokens": 40, "tool_calls": 1}
    assert detail["tool_calls"][0]["tool"] == "prometheus_query" and detail["tool_calls"][0]["ok"] is True
    assert detail["tool_calls"][0]["arguments"] == {"query": QUERY_A}
    assert detail["proposal"] == {
        "catalog_entry": "restart-web",
        "target": "service/checkout",
        "risk_level": "medium",
    }
    [report] = await aiops.audit.verify(config.id)
    assert report.ok


async def test_a_worker_without_the_llm_agent_does_not_load_pydantic_ai(address: str) -> None:
    """Start-up stays cheap: the diagnosis worker (and Pydantic AI, ~0.5 s to import) only with ``llm``."""
    probe = (
        "import asyncio, sys\n"
        "from temporalio.client import Client\n"
        "from temporalio.contrib.pydantic import pydantic_data_converter\n"
        "from agents.registry import load_agent_modules\n"
        "from aiops.runtime.worker_build import build_worker\n"
        "async def main():\n"
        f"    client = await Client.connect({address!r}, data_converter=pydantic_data_converter)\n"
        "    load_agent_modules()\n"
        "    group = build_worker(client, 'probe')\n"
        "    print(len(group.extra), 'pydantic_ai' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AIOPS_AGENT_MODULES", None)
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["0", "False"]
    env["AIOPS_AGENT_MODULES"] = "agents.llm"
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1", "True"]


@pytest.mark.timeout(400)
async def test_a_worker_killed_mid_diagnosis_resumes_without_repeating_tool_calls(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Two tool calls; the worker is SIGKILLed while the model request between them blocks (on a
    file this test controls). Another worker replays the diagnosis from history: the first tool
    call and the first model request are not repeated, the interrupted request is retried, and the
    diagnosis finishes with a proposal waiting for approval."""
    script(
        tmp_path, [("prometheus_query", {"query": QUERY_A}), ("prometheus_query", {"query": QUERY_B})], gate=1
    )
    async with prometheus_stub() as prometheus:
        env = {"AIOPS_AGENT_MODULES": MODULES, DIR_ENV: str(tmp_path)}
        # The killed worker's decision activity is retried once its heartbeat stops (10 s), long
        # before this decision timeout, which the wait below could not outlast.
        config = llm_config(prometheus.url, decision_timeout=900, diagnosis_timeout_seconds=50)
        alert = event("alert", source="service/checkout", severity="high")
        action_id = aiops.approvals.action_id(config.id, alert.id)
        with worker_process(address, task_queue, "doomed", postgres.url, **env) as doomed:
            await aiops.agents.start(config)
            await aiops.events.send(config.id, alert)
            await eventually(lambda: asyncio.to_thread((tmp_path / "blocked").exists), bool, within=60)
            assert prometheus.queries == [QUERY_A]  # the first tool call completed; the second not begun
            doomed.kill()  # SIGKILL: no graceful shutdown, the model request dies with the process
            await asyncio.to_thread(doomed.wait, 30)
        assert (tmp_path / "blocked").read_text() == str(doomed.pid)
        (tmp_path / "release").touch()
        with worker_process(address, task_queue, "successor", postgres.url, **env):
            record = await eventually(lambda: aiops.approvals.action(action_id), pending, within=180)

    assert prometheus.count(QUERY_A) == 1 and prometheus.count(QUERY_B) == 1, prometheus.queries
    requests = (tmp_path / "model-requests").read_text().split("\n")
    # step 1 is the request the kill interrupted: it ran twice, every other once
    assert [r for r in requests if r] == ["step 0", "step 1", "step 1", "step 2"]
    diagnosis = record.action.parameters["diagnosis"]
    assert [c["arguments"]["query"] for c in diagnosis["tool_calls"]] == [QUERY_A, QUERY_B]
    assert diagnosis["usage"]["tool_calls"] == 2 and diagnosis["usage"]["requests"] == 3

    history = await aiops.client.get_workflow_handle(
        diagnosis_workflow_id(config.id, alert.id)
    ).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    started = {
        e.activity_task_started_event_attributes.scheduled_event_id: e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    }
    tools = [i for i, name in scheduled.items() if name.endswith("__call_tool")]
    models = [i for i, name in scheduled.items() if name.endswith("__model_request")]
    assert len(tools) == 2 and len(models) == 3
    assert [started[i].attempt for i in models] == [1, 2, 1]  # the interrupted request, retried
    assert [started[i].attempt for i in tools] == [1, 1]
    assert "successor" in started[models[1]].identity
