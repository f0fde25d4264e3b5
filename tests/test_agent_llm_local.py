"""A real model, offline: SmolLM2-135M-Instruct served by llama.cpp (``xllamacpp``) on loopback.

One alert goes end to end through the ``llm`` agent to a proposal waiting for approval: the model's
own JSON-schema-constrained answer (``output_mode: "compact"``), checked against the catalog like
any answer, becomes an ordinary action that the policy sends to approval. Nothing is scripted: if
the model answered "no proposal", the test fails and prints what it said. The per-event latency
and tokens are printed (``-s``) and attached to the test report (``record_property``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from agents.llm.local_model import MODEL_ALIAS, endpoint
from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord, ActionStatus
from tests.helpers import agent_config, event, eventually, team
from tests.support.postgres_server import PostgresServer, free_port
from tests.support.processes import ROOT, worker_process

pytestmark = pytest.mark.slow

CATALOG: list[dict[str, Any]] = [
    {
        "name": "restart-checkout",
        "action_type": "restart_service",
        "description": "restart the checkout service (fixes out-of-memory crashes)",
        "targets": ["service/checkout"],
        "risk_floor": "medium",
    }
]


@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The local model server, as ``python -m agents.llm.local_model`` runs it; its port.

    Its output goes to a file, not a pipe: llama.cpp logs every request, and a pipe nobody reads
    once the server is up fills and blocks the server. Ready when its health endpoint answers."""
    port = free_port()
    log = tmp_path_factory.mktemp("local-model") / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agents.llm.local_model", "--port", str(port), "--threads", "2"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the local model did not start ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the local model is not ready after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(600)
async def test_a_tiny_local_model_takes_an_alert_to_a_proposal_waiting_for_approval(
    aiops: AiopsClient,
    address: str,
    task_queue: str,
    postgres: PostgresServer,
    local_model: int,
    record_property: Any,
) -> None:
    """In a worker process (``python worker.py`` loading ``agents.llm``), as deployed."""
    modules = {"AIOPS_AGENT_MODULES": "tests.support.agents_for_tests,agents.llm"}
    with worker_process(address, task_queue, "llm-local", postgres.url, **modules):
        await _alert_to_proposal(aiops, local_model, record_property)


async def _alert_to_proposal(aiops: AiopsClient, local_model: int, record_property: Any) -> None:
    config = agent_config(
        "llm",
        settings={"endpoint": endpoint(local_model), "catalog": CATALOG, "tools": {"agent_status": False}},
        runtime={"local_decisions": False, "decision_timeout_seconds": 400},
        approval=team(),
    )
    await aiops.agents.start(config)
    # The alert's id is in the prompt, and the model decodes greedily (temperature 0): a fixed id
    # makes the prompt, and so the answer, the same every run. A random id made the 135M model's
    # answer vary with it (once, in a whole-suite run, it proposed nothing).
    alert = event(
        "alert",
        id="evt-checkout-oom",
        source="service/checkout",
        severity="high",
        alertname="CheckoutOutOfMemory",
        summary="checkout is out of memory and crash-looping; restart it",
    )
    action_id = aiops.approvals.action_id(config.id, alert.id)
    started = time.monotonic()
    await aiops.events.send(config.id, alert)

    def decided(record: Any) -> bool:
        return isinstance(record, ActionRecord) and record.status == ActionStatus.PENDING_APPROVAL

    async def outcome() -> Any:
        status = await aiops.agents.status(config.id)
        if status.counters.events_processed and not status.counters.actions_proposed:
            return status  # no proposal: stop waiting, report below
        return await aiops.approvals.action(action_id)

    result = await eventually(outcome, lambda r: decided(r) or not isinstance(r, ActionRecord), within=420)
    took = time.monotonic() - started
    rows = [r for r in await aiops.audit.rows(agent_id=config.id) if r.step == "llm_diagnosis"]
    detail = rows[0].detail if rows else {}
    print(f"\nlocal model {MODEL_ALIAS}: {took:.1f}s from alert to decision; audit row: {detail}")
    record_property("seconds_alert_to_pending", round(took, 1))
    record_property("llm_usage", detail.get("usage"))
    assert decided(result), f"the model made no proposal: {detail.get('no_proposal_reason')} {detail}"

    action = result.action
    assert action.type.value == "restart_service" and action.target_resources == ["service/checkout"]
    assert action.risk_level.rank >= 1  # at least the catalog's floor (medium)
    diagnosis = action.parameters["diagnosis"]
    assert diagnosis["model"] == f"openai:{MODEL_ALIAS}" and diagnosis["summary"]
    usage = diagnosis["usage"]
    assert usage["requests"] >= 1 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert detail["outcome"] == "proposal" and detail["usage"] == usage
    print(f"diagnosis: {diagnosis['summary']!r}; why: {diagnosis['why']!r}; usage {usage}")
