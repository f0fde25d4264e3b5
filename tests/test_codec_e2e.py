"""Encrypted payloads on a real dev server: the flow works, and the server holds no clear text.

A worker and a client built with the codec (the ``sealed_client`` fixture: ``AIOPS_CODEC_KEYS``
read by ``aiops.connection.connect``) run real agents end to end, with canary strings planted in
the event, the agent's config, the plan, a failure message, the approval comment and, in the
llm test, the log line a diagnosis quotes. Then every history, description and visibility record of
the test's workflows is fetched *without* the codec and searched byte for byte: no canary may
appear. A control first proves the search finds a canary the server holds in clear.
Key rotation: actions started under key ``a`` are approved and finish after the worker restarts
with ``b`` current and ``a`` kept for decryption; a client without ``a`` names the key it lacks.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from activities.agent_activities import AgentActivities
from agents import ActionResult, AgentAction, register_agent
from agents.llm.contracts import diagnosis_task_queue
from aiops.client import AiopsClient
from aiops.codec import KEY_ID_METADATA, UnknownKeyError
from aiops.connection import connect
from aiops.contracts.action import ActionStatus
from aiops.runtime.worker_build import build_worker
from tests.conftest import CODEC_KEY_ENV
from tests.helpers import agent_config, event, eventually, team, wait_pending
from tests.support.agents_for_tests import LEDGER, ScriptedAgent
from tests.support.llm_models import RESTART_ANSWER, register, scripted
from tests.test_agent_llm import CATALOG
from workflows.action.details import inbox_summary

pytestmark = pytest.mark.timeout(300)

KEY_B = "tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLQ="  # 32 bytes of 0xb4, base64


def canaries() -> dict[str, str]:
    """One unique, greppable string per place a secret could leak from."""
    tag = uuid.uuid4().hex[:10]
    places = ("event", "config", "plan", "failure", "comment", "result", "log")
    return {place: f"CANARY-{place}-{tag}" for place in places}


@register_agent("codec-canary")
class CanaryAgent(ScriptedAgent):
    """The scripted agent, whose first execution attempt fails quoting the action's parameters
    (a failure message that carries data), and whose result carries ``result_note``."""

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        LEDGER["canary-attempt"].append(action.id)
        if LEDGER["canary-attempt"].count(action.id) == 1:
            raise RuntimeError(f"transient failure near {action.parameters.get('failure_note')}")
        LEDGER["executed"].append(action.id)
        return ActionResult(success=True, message=f"done: {action.parameters.get('result_note')}")


def on_queues(task_queue: str) -> str:
    """The workflows on the task queue and on its agent types' queues (where actions run)."""
    return f'TaskQueue="{task_queue}" OR TaskQueue STARTS_WITH "{task_queue}."'


async def server_bytes(raw: Client, queries: Iterable[str], expect_at_least: int) -> bytes:
    """Everything the server holds about the workflows the queries match, as the server has it:
    each history's events, each description (memo, search attributes, pending activities and
    their last failures) and each visibility record, read by a client without the codec."""

    async def listed() -> list[Any]:
        return [w for query in queries async for w in raw.list_workflows(query)]

    found = await eventually(listed, lambda ws: len(ws) >= expect_at_least)
    blobs: list[bytes] = []
    for info in found:
        blobs.append(info.raw_info.SerializeToString())
        handle = raw.get_workflow_handle(info.id, run_id=info.run_id)
        history = await handle.fetch_history()
        blobs += [e.SerializeToString() for e in history.events]
        blobs.append(history.to_json().encode())
        blobs.append((await handle.describe()).raw_description.SerializeToString())
    return b"\n".join(blobs)


def leaked(blob: bytes, secrets: dict[str, str]) -> list[str]:
    return [place for place, canary in secrets.items() if canary.encode() in blob]


async def test_the_search_finds_a_canary_the_server_holds_in_clear(client: Client, task_queue: str) -> None:
    """The control: without the codec the same search does find the canary (no worker needed:
    a workflow started on an idle queue holds its input in its first event)."""
    secret = canaries()
    handle = await client.start_workflow(
        "NoSuchWorkflow", secret["event"], id=f"clear-{uuid.uuid4()}", task_queue=task_queue
    )
    try:
        blob = await server_bytes(client, [f'TaskQueue="{task_queue}"'], 1)  # the agent alone
        assert leaked(blob, secret) == ["event"]
    finally:
        await handle.terminate()


async def test_an_action_runs_end_to_end_and_the_server_sees_no_canary(
    sealed_client: Client, client: Client, task_queue: str, pool: asyncpg.Pool
) -> None:
    secret = canaries()
    aiops = AiopsClient(sealed_client, task_queue, pool, actor="bob")
    config = agent_config("codec-canary", approval=team(), settings={"runbook_note": secret["config"]})
    async with build_worker(sealed_client, task_queue, AgentActivities(client=sealed_client), pool=pool):
        await aiops.agents.start(config)
        alert = event(
            "alert",
            risk="high",
            do=f"restart {secret['plan']}",  # the action's description, so its plan's summary
            note=secret["event"],
            failure_note=secret["failure"],
            result_note=secret["result"],
        )
        await aiops.events.send(config.id, alert)
        action_id = aiops.approvals.action_id(config.id, alert.id)
        record = await wait_pending(aiops, action_id)
        assert record.plan is not None and secret["plan"] in record.plan.summary  # read through the codec
        await aiops.approvals.approve(action_id, "alice", comment=f"ok, {secret['comment']}")
        done = await aiops.approvals.wait_for_action(action_id)
        assert done.status == ActionStatus.VERIFIED
        assert done.result is not None and secret["result"] in done.result.message
        assert LEDGER["canary-attempt"].count(action_id) == 2  # the failure happened, then a retry
        status = await aiops.agents.status(config.id)
        assert status.config.settings == {"runbook_note": secret["config"]}
    rows = await aiops.audit.rows(action_id=action_id)
    assert any(secret["comment"] in r.model_dump_json() for r in rows), rows  # audited, readable

    blob = await server_bytes(client, [on_queues(task_queue)], 2)
    # The inbox's AiopsSummary (the description, so the plan's canary) is in clear by design, like
    # every search attribute (docs/encryption.md): cut it out, then nothing else may carry a canary.
    summary = json.dumps(inbox_summary(record.action)).encode()
    assert summary in blob
    blob = blob.replace(summary, b"")
    assert leaked(blob, secret) == []
    assert b"binary/encrypted" in blob and b"Encoded failure" in blob  # sealed, failures included


async def test_a_diagnosis_by_the_llm_agent_leaves_no_canary_on_the_server(
    sealed_client: Client, client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    secret = canaries()
    (tmp_path / "checkout.log").write_text(
        f"line 1\nkernel: Out of memory: Killed process 42 (checkout) {secret['log']}\n"
    )
    aiops = AiopsClient(sealed_client, task_queue, pool, actor="bob")
    async with build_worker(sealed_client, task_queue, AgentActivities(client=sealed_client), pool=pool):
        executor = agent_config("scripted")
        await aiops.agents.start(executor)
        catalog = [{**CATALOG[0], "executor_agent": executor.id}, CATALOG[1]]
        name = f"m-{uuid.uuid4().hex[:8]}"
        model = scripted([("read_file_tail", {"path": str(tmp_path / "checkout.log")})], RESTART_ANSWER)
        config = agent_config(
            "llm",
            settings={
                "endpoint": register(name, model),
                "catalog": catalog,
                "tools": {"file_roots": [str(tmp_path)]},
            },
            runtime={"local_decisions": False, "decision_timeout_seconds": 120},
            approval=team(),
        )
        await aiops.agents.start(config)
        alert = event("alert", source="service/checkout", severity="high", annotation=secret["event"])
        await aiops.events.send(config.id, alert)
        action_id = aiops.approvals.action_id(config.id, alert.id)
        record = await wait_pending(aiops, action_id)
        diagnosis = record.action.parameters["diagnosis"]
        assert secret["log"] in diagnosis["tool_calls"][0]["result"]  # the tool's answer, decoded
        await aiops.approvals.approve(action_id, "alice", comment=secret["comment"])
        assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED

    queues = [on_queues(task_queue), f'TaskQueue="{diagnosis_task_queue(task_queue)}"']
    blob = await server_bytes(client, queues, 4)  # two agents, the action, the diagnosis
    assert leaked(blob, secret) == []
    assert b"binary/encrypted" in blob


async def test_actions_started_under_key_a_finish_after_the_worker_moves_to_key_b(
    sealed_client: Client,
    client: Client,
    address: str,
    task_queue: str,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = canaries()
    under_a = AiopsClient(sealed_client, task_queue, pool, actor="bob")
    config = agent_config("scripted", approval=team(), settings={"note": secret["config"]})
    async with build_worker(sealed_client, task_queue, AgentActivities(client=sealed_client), pool=pool):
        await under_a.agents.start(config)
        pending = []
        for _ in range(2):
            alert = event("alert", risk="high", note=secret["event"])
            await under_a.events.send(config.id, alert)
            pending.append(under_a.approvals.action_id(config.id, alert.id))
        for action_id in pending:
            await wait_pending(under_a, action_id)

    # The worker restarts with the new key list: b seals, a still opens what a sealed.
    monkeypatch.setenv("AIOPS_TEST_CODEC_KEY_B", KEY_B)
    monkeypatch.setenv("AIOPS_CODEC_KEYS", f"b=env:AIOPS_TEST_CODEC_KEY_B,a=env:{CODEC_KEY_ENV}")
    monkeypatch.setenv("AIOPS_CODEC_CURRENT", "b")
    rotated = await connect(address)
    under_b = AiopsClient(rotated, task_queue, pool, actor="bob")
    async with build_worker(rotated, task_queue, AgentActivities(client=rotated), pool=pool):
        for action_id in pending:
            await under_b.approvals.approve(action_id, "alice", comment=secret["comment"])
        for action_id in pending:
            assert (await under_b.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
        # New events after the rotation are sealed with b and work as well.
        alert = event("alert", risk="low", note=secret["event"])
        await under_b.events.send(config.id, alert)
        later = under_b.approvals.action_id(config.id, alert.id)
        assert (await under_b.approvals.wait_for_action(later)).status == ActionStatus.VERIFIED

    blob = await server_bytes(client, [on_queues(task_queue)], 4)
    assert leaked(blob, secret) == []
    history = await client.get_workflow_handle(pending[0]).fetch_history()
    assert _key_ids(json.loads(history.to_json())) == {
        b"a",
        b"b",
    }  # started under a, approved and finished under b

    # A process that dropped key a too early cannot read a's payloads, and says which key it lacks.
    monkeypatch.setenv("AIOPS_CODEC_KEYS", "b=env:AIOPS_TEST_CODEC_KEY_B")
    only_b = await connect(address)
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    with pytest.raises(UnknownKeyError, match="encrypted with key 'a'"):
        await only_b.data_converter.decode(started)


def _key_ids(document: Any) -> set[bytes]:
    """The key ids named in every payload's metadata of a history in its JSON form."""
    found: set[bytes] = set()
    if isinstance(document, dict):
        metadata = document.get("metadata")
        if isinstance(metadata, dict) and KEY_ID_METADATA in metadata:
            found.add(base64.b64decode(metadata[KEY_ID_METADATA]))
        for value in document.values():
            found |= _key_ids(value)
    elif isinstance(document, list):
        for value in document:
            found |= _key_ids(value)
    return found


def test_a_worker_with_a_broken_key_stops_at_start_with_one_line() -> None:
    worker = subprocess.run(
        [sys.executable, "worker.py", "--no-database", "--http-port", "-1", "--log-format", "text"],
        env={
            "PATH": "/usr/bin:/bin",
            "AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_CODEC_NOT_SET",
            "PYTHONPATH": ".",
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert worker.returncode == 2, worker.stderr
    assert "payload encryption: AIOPS_CODEC_KEYS key 'a': environment variable AIOPS_TEST_CODEC_NOT_SET" in (
        worker.stderr + worker.stdout
    )
