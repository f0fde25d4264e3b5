"""The ``aiops`` command line against the real dev server, worker and PostgreSQL.

Commands run through typer's ``CliRunner`` in a thread (the CLI runs its own
event loop, never the session's), and once as a real ``python -m aiops.cli``
process. Every command's happy path, the ``--output json`` shapes, and the
exit codes with their one-line messages: 0 done, 1 refused or failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from typer.testing import CliRunner, Result

from activities.database.audit_log import AuditLog
from aiops.cli import app
from aiops.client import AiopsClient
from aiops.contracts.action import ApprovalRequest
from aiops.contracts.activities import AuditRecord, AuditStep
from aiops.contracts.agent import WORKFLOW_ID_PREFIX
from aiops.contracts.config import AgentConfig, Approver
from aiops.contracts.models import SystemEvent
from tests.helpers import (
    agent_config,
    event,
    eventually,
    gone,
    start_pending_action,
    start_without_worker,
    team,
)
from tests.support.postgres_server import PostgresServer
from tests.support.processes import ROOT

Cli = Callable[..., Awaitable[Result]]

RUNNER = CliRunner()


@pytest.fixture
def cli_env(address: str, postgres: PostgresServer, task_queue: str) -> dict[str, str | None]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_PROFILE": None,
        "DATABASE_URL": postgres.url,
        "AIOPS_TASK_QUEUE": task_queue,
        "AIOPS_USER": "tester",
        "COLUMNS": "250",
    }


@pytest.fixture
def cli(cli_env: dict[str, str | None]) -> Cli:
    """``await cli("agents", "list", env={...}, input=...)``: one CLI invocation in a thread."""

    async def invoke(
        *args: str, env: dict[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        return await asyncio.to_thread(
            RUNNER.invoke, app, list(args), env={**cli_env, **(env or {})}, input=input
        )

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def parsed(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def failed(result: Result, code: int, *fragments: str) -> str:
    """The exit code is ``code`` and stderr is exactly one ``error: ...`` line naming the problem."""
    assert result.exit_code == code, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def write_config(path: Path, config: AgentConfig) -> str:
    path.write_text(config.model_dump_json(indent=2))
    return str(path)


def tunable(**settings: object) -> AgentConfig:
    return agent_config("tunable", settings={"mode": "observe", "limit": 10, **settings})


# ----- help and the process entry point ---------------------------------------------

COMMANDS = [
    [],
    ["agents"],
    ["agents", "list"],
    ["agents", "status"],
    ["agents", "start"],
    ["agents", "stop"],
    ["agents", "pause"],
    ["agents", "resume"],
    ["events"],
    ["events", "send"],
    ["approvals"],
    ["approvals", "list"],
    ["approvals", "show"],
    ["approvals", "approve"],
    ["approvals", "reject"],
    ["config"],
    ["config", "apply"],
    ["config", "diff"],
    ["config", "history"],
    ["config", "rollback"],
    ["audit"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["worker"],
    ["dev"],
    ["dev", "up"],
    ["dev", "down"],
]


def test_every_command_and_group_has_help() -> None:
    for command in COMMANDS:
        result = RUNNER.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (command, result.stdout, result.stderr)
        assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 5, command
    worker_help = RUNNER.invoke(app, ["worker", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--agent-module" in worker_help and "--task-queue" in worker_help
    dev_help = RUNNER.invoke(app, ["dev", "--help"], env={"COLUMNS": "200"}).stdout
    assert "up" in dev_help and "down" in dev_help


async def test_python_dash_m_runs_the_cli_as_a_process(cli_env: dict[str, str | None], worker) -> None:
    env = {k: v for k, v in {**os.environ, **cli_env, "PYTHONPATH": str(ROOT)}.items() if v is not None}

    async def process(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiops.cli",
            *args,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await process("--output", "json", "agents", "list")
    assert (code, json.loads(out)) == (0, []), err
    code, out, err = await process("agents", "status", "nobody-here")
    assert code == 1 and out == ""
    assert err.strip().startswith("error: no agent named 'nobody-here' is running")
    assert len(err.strip().splitlines()) == 1


# ----- agents --------------------------------------------------------------------------


async def test_agents_list_warns_of_an_agent_that_does_not_answer_and_fails(
    cli: Cli, client: Client, task_queue: str
) -> None:
    """No worker polls the queue (the agents' workers are down): the list says which agent did
    not answer and why, within its patience, instead of waiting out the call and failing whole."""
    silent = agent_config("recorder")
    await start_without_worker(client, silent, task_queue)
    try:
        await eventually(lambda: list_ids(client, task_queue), lambda ids: ids == [silent.id])
        result = await cli("agents", "list")
        assert result.exit_code == 1, result.output
        assert f"warning: agent {silent.id} did not answer: no answer to its status query" in result.stderr
        assert "1 agent(s) did not answer their status query" in result.stderr
        assert "no agent answered" in result.stdout
    finally:
        await gone(client, silent)


async def list_ids(client: Client, task_queue: str) -> list[str]:
    query = f"TaskQueue = '{task_queue}'"
    return [w.id.removeprefix(WORKFLOW_ID_PREFIX) async for w in client.list_workflows(query)]


async def test_agents_start_list_status_pause_resume_stop_and_restart(
    cli: Cli, aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    tester = Approver(name="tester", roles=["sre", "admin"])  # $AIOPS_USER here, by name (dev mode)
    config = agent_config(
        "scripted", approval=team().model_copy(update={"approvers": [*team().approvers, tester]})
    )
    config_file = write_config(tmp_path / "agent.json", config)

    started = parsed(await cli("-o", "json", "agents", "start", "--config", config_file))
    assert started["started"] is True and started["workflow_id"] == f"agent-{config.id}"
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")

    again = ok(await cli("agents", "start", "--config", config_file))
    assert "already running" in again.stdout
    different = config.model_copy(update={"name": "renamed"})
    failed(
        await cli("agents", "start", "--config", write_config(tmp_path / "other.json", different)),
        1,
        "already running with a different config",
        "aiops config apply",
    )

    table = ok(await cli("agents", "list")).stdout
    assert config.id in table and "scripted" in table and "running" in table
    listed = parsed(await cli("-o", "json", "agents", "list"))
    [mine] = [a for a in listed if a["agent_id"] == config.id]
    assert (mine["state"], mine["config_version"], mine["counters"]["events_processed"]) == ("running", 1, 0)

    status = parsed(await cli("-o", "json", "agents", "status", config.id))
    assert status["agent_id"] == config.id and status["config"]["approval"]["approvers"][0]["name"] == "alice"
    assert "config version" in ok(await cli("agents", "status", config.id)).stdout

    ok(await cli("agents", "pause", config.id))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "paused")
    paused = parsed(await cli("-o", "json", "agents", "list", "--state", "paused"))
    assert [a["agent_id"] for a in paused] == [config.id]
    ok(await cli("agents", "resume", config.id))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")

    stopped = parsed(
        await cli("-o", "json", "agents", "stop", config.id, "--reason", "maintenance", "--no-drain")
    )
    assert stopped == {
        "agent_id": config.id,
        "requested": "stop",
        "reason": "maintenance",
        "drain": False,
        "by": "tester",
        "authenticated": False,  # dev mode: by name
        "changed": True,
    }
    await eventually(lambda: aiops.agents.is_running(config.id), lambda running: not running)
    assert parsed(await cli("-o", "json", "agents", "list")) == []

    restarted = parsed(await cli("-o", "json", "agents", "start", config.id))
    assert restarted["started"] is True and restarted["config_version"] == 1
    status_after = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    assert status_after.config_version == 1 and status_after.config.approval == config.approval


# ----- events ----------------------------------------------------------------------------


async def test_events_from_flags_a_file_stdin_and_a_jsonl_batch(
    cli: Cli, aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = tunable()
    await aiops.agents.start(config)

    single = ok(
        await cli("events", "send", config.id, "--type", "alert", "--source", "db-1", "--severity", "high")
    )
    assert f"to agent {config.id}" in single.stdout
    sent = parsed(
        await cli(
            "-o", "json", "events", "send", config.id, "-t", "health_check", "-s", "web-1",
            "--id", "flag-1", "--data", '{"latency_ms": 900}', "--correlation-id", "inc-7",
        )
    )  # fmt: skip
    assert sent == {
        "agent_id": config.id,
        "sent": 1,
        "event_ids": ["flag-1"],
        "outcomes": {"accepted": 1},
        "rejected": [],
    }

    one = event("alert", source="cache-1")
    event_file = tmp_path / "event.json"
    event_file.write_text(one.model_dump_json())
    ok(await cli("events", "send", config.id, "--file", str(event_file)))
    ok(await cli("events", "send", config.id, "--file", str(event_file)))  # a resend: deduplicated
    from_stdin = event("alert", source="cache-2")
    ok(await cli("events", "send", config.id, "--file", "-", input=from_stdin.model_dump_json()))

    batch = [event("infrastructure_drift", source=f"vpc-{i}") for i in range(120)]
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(e.model_dump_json() for e in batch) + "\n\n")
    result = parsed(
        await cli("-o", "json", "events", "send", config.id, "--jsonl", str(lines), "--batch-size", "50")
    )
    assert result["sent"] == 120 and result["event_ids"] == [e.id for e in batch]
    assert result["outcomes"] == {"accepted": 120}
    table = ok(await cli("events", "send", config.id, "--jsonl", str(lines)))
    assert "sent 120 events" in table.stdout and "120 duplicate" in table.stdout  # the agent says so

    status = await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: s.counters.events_received == 245 and s.counters.events_deduplicated == 121,
    )
    # the health check is not a type the agent subscribes to: filtered, not decided
    assert (status.counters.events_processed, status.counters.events_filtered) == (123, 1)
    assert status.counters.events_rejected == 0 and not status.recent_errors


async def test_events_send_with_a_config_starts_the_agent(
    cli: Cli, aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = tunable()
    config_file = write_config(tmp_path / "agent.json", config)
    ok(await cli("events", "send", config.id, "-t", "alert", "-s", "db-2", "--config", config_file))
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1
    )
    assert status.state == "running"
    failed(
        await cli("events", "send", "someone-else", "-t", "alert", "-s", "x", "--config", config_file),
        2,
        f"the config is for agent {config.id!r}",
    )


# ----- approvals --------------------------------------------------------------------------


async def test_approvals_list_show_refuse_approve_and_reject(cli: Cli, aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, record = await start_pending_action(aiops, config, "high")

    table = ok(await cli("approvals", "list")).stdout
    assert action_id in table and "high" in table and "0/1" in table
    inbox = parsed(await cli("-o", "json", "approvals", "list", "--agent", config.id))
    assert [(i["action_id"], i["status"], i["action"]["risk_level"]) for i in inbox] == [
        (action_id, "pending_approval", "high")
    ]
    assert parsed(await cli("-o", "json", "approvals", "list", "--agent", "nobody-else")) == []
    assert ok(await cli("approvals", "list", "-q", "--agent", config.id)).stdout.split() == [action_id]

    shown = ok(await cli("approvals", "show", action_id)).stdout
    assert record.plan is not None and record.plan_digest is not None
    for expected in (
        record.plan.summary,
        record.event.id,
        "high",
        record.decision.reason if record.decision else "",
    ):
        assert expected in shown
    pasted = shown.replace(" \\\n      ", " ")  # a long command is printed over lines, still one command
    assert f"aiops approvals approve {action_id} --as tester --plan-digest {record.plan_digest}" in pasted
    narrow = ok(await cli("approvals", "show", action_id, env={"COLUMNS": "100"})).stdout
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 100, narrow
    assert narrow.count(record.plan.summary) == 1, "the plan is printed once"
    for change in record.plan.changes:
        assert narrow.count(change) == 1, f"{change!r} printed more than once:\n{narrow}"
    inbox_narrow = ok(await cli("approvals", "list", env={"COLUMNS": "100"})).stdout
    assert max(len(line.rstrip()) for line in inbox_narrow.splitlines()) <= 100, inbox_narrow
    assert action_id in inbox_narrow, "ids are never broken across lines"

    refused = failed(await cli("approvals", "approve", action_id, "--as", "oscar"), 1, "refused", "oscar")
    assert "roles" in refused
    # refusals through the update come back at once; one sent as a signal (the Web UI's way) is recorded
    await aiops.approvals.signal(action_id, ApprovalRequest(approver="mallory", comment="let me"))
    await eventually(lambda: aiops.approvals.action(action_id), lambda r: len(r.refused) == 2)
    after_refusal = parsed(await cli("-o", "json", "approvals", "show", action_id.removeprefix("action-")))
    assert after_refusal["action_id"] == action_id
    assert [(r["approver"], r["approved"]) for r in after_refusal["refused"]] == [
        ("oscar", True),
        ("mallory", True),
    ]
    shown_again = ok(await cli("approvals", "show", action_id)).stdout
    assert "refused decisions" in shown_again and "unknown approver 'mallory'" in shown_again

    approved = parsed(
        await cli(
            "-o", "json", "approvals", "approve", action_id, "--comment", "window open",
            "--plan-digest", record.plan_digest, env={"AIOPS_USER": "alice"},
        )
    )  # fmt: skip
    assert approved["action_id"] == action_id
    first = approved["approvals"][0]
    assert (first["approver"], first["comment"], first["approved"]) == ("alice", "window open", True)
    final = await aiops.approvals.wait_for_action(action_id)
    assert final.status in ("succeeded", "verified")
    failed(await cli("approvals", "approve", action_id, "--as", "bob"), 1, "no longer pending")

    sent = parsed(
        await cli(
            "-o",
            "json",
            "events",
            "send",
            config.id,
            "-t",
            "alert",
            "-s",
            "db-9",
            "--data",
            '{"risk": "high"}',
        )
    )
    second = f"action-{config.id}:{sent['event_ids'][0]}"
    await eventually(lambda: aiops.approvals.action(second), lambda r: r.status == "pending_approval")
    rejected = ok(await cli("approvals", "reject", second, "--as", "bob", "--comment", "not today"))
    assert "rejected" in rejected.stdout
    assert (await aiops.approvals.wait_for_action(second)).status == "rejected"


# ----- config ------------------------------------------------------------------------------


async def test_config_apply_history_diff_rollback_and_refusals(
    cli: Cli, aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    config = tunable()
    ok(await cli("agents", "start", "--config", write_config(tmp_path / "v1.json", config)))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")

    acting = config.model_copy(update={"settings": {**config.settings, "mode": "act"}})
    applied = ok(
        await cli(
            "config", "apply", write_config(tmp_path / "v2.json", acting), "--author", "alice", "-m", "act"
        )
    )
    assert "now runs config version 2 (was 1)" in applied.stdout

    history = parsed(await cli("-o", "json", "config", "history", config.id))
    assert [(v["version"], v["author"], v["comment"]) for v in history][:2] == [
        (2, "alice", "act"),
        (1, "tester", "config at start"),
    ]
    assert "alice" in ok(await cli("config", "history", config.id)).stdout

    changes = parsed(await cli("-o", "json", "config", "diff", config.id, "1", "2"))
    assert changes == [{"path": "settings.mode", "old": "observe", "new": "act"}]
    assert "settings.mode" in ok(await cli("config", "diff", config.id, "1", "2")).stdout

    rolled = parsed(await cli("-o", "json", "config", "rollback", config.id, "1", "--author", "bob"))
    assert (rolled["version"], rolled["previous_version"], rolled["changed"]) == (3, 2, True)
    assert (await aiops.agents.status(config.id)).config.settings["mode"] == "observe"
    [v3] = await aiops.config.history(config.id, limit=1)
    assert (v3.author, v3.comment) == ("bob", "rollback to version 1")

    refused = tmp_path / "refused.json"
    write_config(refused, config.model_copy(update={"settings": {"mode": "observe", "limit": 0}}))
    failed(await cli("config", "apply", str(refused)), 1, "config refused", "settings.limit")
    invalid = tmp_path / "invalid.json"
    invalid.write_text(
        json.dumps({**config.model_dump(mode="json"), "automation_level": "wild", "colour": "red"})
    )
    failed(await cli("config", "apply", str(invalid)), 2, "invalid config", "automation_level:", "colour:")
    failed(await cli("config", "diff", config.id, "1", "9"), 1, "no config version 9")
    for env in ({}, {"DATABASE_URL": None}):  # checked in the store, or refused by the agent's worker
        missing = failed(await cli("config", "rollback", config.id, "9", "--author", "bob", env=env), 1)
        assert "no config version 9" in missing and "UnknownConfigVersion" not in missing, missing
    failed(await cli("config", "history", "never-configured"), 1, "no stored config versions")
    assert [v.version for v in await aiops.config.history(config.id)] == [3, 2, 1]


# ----- audit -------------------------------------------------------------------------------


async def test_audit_tail_and_verify(cli: Cli, aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    await aiops.agents.start(config)
    e = event("alert", risk="low")
    await aiops.events.send(config.id, e)
    action_id = aiops.approvals.action_id(config.id, e.id)
    await aiops.approvals.wait_for_action(action_id)
    await eventually(
        lambda: aiops.audit.rows(action_id=action_id),
        lambda rows: any(r.step == "action_finished" for r in rows),
    )

    everything = parsed(await cli("-o", "json", "audit", "tail", "--agent", config.id, "-n", "1000"))
    last3 = parsed(await cli("-o", "json", "audit", "tail", "--agent", config.id, "-n", "3"))
    assert len(everything) > 3 and last3 == everything[-3:]
    assert [r["seq"] for r in everything] == sorted(r["seq"] for r in everything)
    of_action = parsed(await cli("-o", "json", "audit", "tail", "--action", action_id))
    assert of_action and {r["action_id"] for r in of_action} == {action_id}
    assert {"decision", "action_finished"} <= {r["step"] for r in of_action}
    recent = parsed(await cli("-o", "json", "audit", "tail", "--agent", config.id, "--since", "1h"))
    assert recent[-1] == everything[-1]
    assert (
        parsed(await cli("-o", "json", "audit", "tail", "--agent", config.id, "--since", "2999-01-01")) == []
    )
    table = ok(await cli("audit", "tail", "--agent", config.id, "-n", "5")).stdout
    assert "action_finished" in table or "agent_lifecycle" in table
    for command in (("audit", "tail", "--agent", config.id, "-n", "20"), ("agents", "list")):
        narrow = ok(await cli(*command, env={"COLUMNS": "100"})).stdout
        assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 100, narrow
    assert action_id in ok(await cli("audit", "tail", "--action", action_id, env={"COLUMNS": "100"})).stdout

    verified = ok(await cli("audit", "verify", config.id))
    assert config.id in verified.stdout and "ok" in verified.stdout
    [report] = parsed(await cli("-o", "json", "audit", "verify", config.id))
    assert report["ok"] is True and report["rows_checked"] == len(everything)
    failed(await cli("audit", "verify", "no-rows-here"), 1, "no rows for agent 'no-rows-here'")


async def test_audit_verify_names_the_first_broken_row(cli: Cli, pool: asyncpg.Pool) -> None:
    log = AuditLog(pool)
    agent = f"cli-tamper-{os.urandom(4).hex()}"
    now = datetime.now(UTC)
    await log.append(
        [
            AuditRecord(agent_id=agent, step=AuditStep.AGENT_LIFECYCLE, key=f"{agent}:{i}", occurred_at=now)
            for i in range(4)
        ]
    )
    rows = await log.rows(agent_id=agent)
    async with pool.acquire() as conn:  # a superuser bypasses the append-only triggers
        await conn.execute("SET session_replication_role = replica")
        try:
            await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1", rows[1].seq)
        finally:
            await conn.execute("SET session_replication_role = origin")

    result = await cli("audit", "verify", agent)
    failed(result, 1, f"agent {agent} is broken at row {rows[1].seq}")
    assert "BROKEN" in result.stdout
    everyone = await cli("-o", "json", "audit", "verify")
    failed(everyone, 1, "is broken at row")
    reports = {r["agent_id"]: r for r in json.loads(everyone.stdout)}
    assert reports[agent]["ok"] is False and reports[agent]["broken_at_seq"] == rows[1].seq


# ----- bad input and failures ---------------------------------------------------------------


async def test_bad_input_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    send = ("events", "send", "some-agent")
    failed(await cli(*send, "-t", "alert", "-s", "x", "--data", "{oops"), 2, "--data is not valid JSON")
    failed(await cli(*send, "-t", "alert", "-s", "x", "--data", "[1]"), 2, "--data must be a JSON object")
    failed(await cli(*send, "-t", "alert", "-s", "x", "--severity", "huge"), 2, "--severity", "'huge'")
    failed(await cli(*send, "-t", "alrt", "-s", "x"), 2, "--type", "'alrt'")
    failed(await cli(*send, "-t", "alert"), 2, "an event needs --source")
    failed(await cli(*send), 2, "nothing to send")
    failed(await cli(*send, "-t", "alert", "-s", "x", "--file", "e.json"), 2, "one way")
    failed(await cli(*send, "--file", str(tmp_path / "missing.json")), 2, "missing.json: no such file")

    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"id": "a", "type": ')
    failed(await cli(*send, "--file", str(malformed)), 2, "malformed.json is not valid JSON", "line 1")
    failed(await cli("agents", "start", "--config", str(malformed)), 2, "not valid JSON")
    no_id = tmp_path / "no-id.json"
    no_id.write_text(json.dumps({"type": "alert", "source": "x"}))
    failed(await cli(*send, "--file", str(no_id)), 2, "id: field required")
    lines = tmp_path / "events.jsonl"
    good = event("alert").model_dump_json()
    lines.write_text(
        "\n".join([good, '{"id": "b", "type": "boom", "source": "x", "severity": "huge"}', "nope"])
    )
    message = failed(await cli(*send, "--jsonl", str(lines)), 2, "nothing sent: 2 bad line(s)")
    assert "line 2: invalid event: type:" in message and "severity:" in message and "line 3" in message

    bad_config = tmp_path / "agent.json"
    bad_config.write_text(json.dumps({"id": "has space", "name": "n", "type": "tunable", "retry": {"x": 1}}))
    failed(await cli("agents", "start", "-c", str(bad_config)), 2, "invalid config", "id:", "retry.x:")
    failed(await cli("agents", "start"), 2, "give either --config")
    failed(await cli("agents", "frobnicate"), 2, "No such command")
    failed(await cli("-o", "yaml", "agents", "list"), 2, "--output")
    failed(await cli("audit", "tail", "--since", "last tuesday"), 2, "--since")
    failed(await cli("audit", "tail", "-n", "0"), 2, "-n")
    failed(await cli("approvals", "approve", "x:y", "--as", ""), 2, "--as needs a name")
    for mistyped in ("12ab", "z" * 64, "5c9bb653e4f8328f18efb44fdd0b636f0237db435d3299b2f90d8238d78441d"):
        failed(
            await cli("approvals", "approve", "x:y", "--plan-digest", mistyped),
            2,
            "--plan-digest",
            "malformed",
        )
    for name in ("bad name!", "", " alice", "al\u202eice", "a" * 201):
        failed(
            await cli("keys", "generate", name, "--out", str(tmp_path / "k.json")), 2, "not an approver name"
        )
    assert not (tmp_path / "k.json").exists()

    json_mode = await cli("-o", "json", *send, "-t", "alert", "-s", "x", "--data", "{oops")
    failed(json_mode, 2)
    assert json_mode.stdout == ""


async def test_unknown_agents_and_actions_exit_1(cli: Cli, worker) -> None:
    for command in (
        ("agents", "status", "ghost"),
        ("agents", "pause", "ghost"),
        ("agents", "resume", "ghost"),
        ("agents", "stop", "ghost"),
        ("events", "send", "ghost", "-t", "alert", "-s", "x"),
    ):
        failed(await cli(*command), 1, "no agent named 'ghost' is running", "aiops agents start")
    failed(await cli("agents", "start", "ghost"), 1, "no stored config", "--config")
    failed(await cli("config", "rollback", "ghost", "1"), 1, "no agent named 'ghost'")
    failed(await cli("approvals", "show", "action-ghost:e1"), 1, "no action 'action-ghost:e1'")
    failed(await cli("approvals", "approve", "ghost:e1", "--as", "alice"), 1, "no action 'action-ghost:e1'")
    failed(await cli("approvals", "reject", "ghost:e1", "--as", "alice"), 1, "no action")
    result = await cli("-o", "json", "agents", "status", "ghost")
    failed(result, 1)
    assert result.stdout == ""


async def test_an_unreachable_server_exits_1(cli: Cli) -> None:
    unreachable = {"TEMPORAL_ADDRESS": "127.0.0.1:1", "DATABASE_URL": None}
    failed(await cli("agents", "list", env=unreachable), 1, "cannot reach Temporal at 127.0.0.1:1")
    no_database = await cli("config", "history", "x", env={"DATABASE_URL": None})
    failed(no_database, 1, "set DATABASE_URL")


async def test_operator_edges_output_anywhere_kill_switch_breaker_reset_and_failed_agents(
    cli: Cli, aiops: AiopsClient, worker
) -> None:
    """-o after the command; pause/resume --all; reset-breaker; --state failed lists failed agents."""
    first, second = agent_config("scripted"), agent_config("scripted")
    broken = agent_config("init_fails")
    for config in (first, second):
        await aiops.agents.start(config)
    await aiops.agents.start(broken, require_worker=False)  # past the up-front config check: a failed agent
    for config in (first, second):
        await eventually(lambda c=config: aiops.agents.status(c.id), lambda s: s.state == "running")

    listed = parsed(await cli("agents", "list", "-o", "json"))
    assert {first.id, second.id} <= {s["agent_id"] for s in listed}
    assert isinstance(parsed(await cli("audit", "tail", "--output=json")), list)

    paused = parsed(await cli("agents", "pause", "--all", "--as", "sre", "-o", "json"))
    assert {first.id, second.id} <= set(paused["agent_ids"])
    for config in (first, second):
        await eventually(lambda c=config: aiops.agents.status(c.id), lambda s: s.state == "paused")
    ok(await cli("agents", "resume", "--all"))
    for config in (first, second):
        await eventually(lambda c=config: aiops.agents.status(c.id), lambda s: s.state == "running")
    failed(await cli("agents", "pause"), 2, "--all")

    reset = parsed(await cli("agents", "reset-breaker", first.id, "--as", "sre", "-o", "json"))
    assert reset == {
        "agent_id": first.id,
        "requested": "reset_circuit_breaker",
        "by": "sre",
        "authenticated": False,  # dev mode, and the agent has no approvers yet
        "changed": False,  # it was not open
    }

    gone = await eventually(
        lambda: cli("-o", "json", "agents", "list", "--state", "failed"),
        lambda r: r.exit_code == 0 and broken.id in r.stdout,
        within=30,
    )
    entry = next(f for f in json.loads(gone.stdout) if f["agent_id"] == broken.id)
    assert entry["state"] == "failed" and entry["type"] == "init_fails"


async def test_watch_and_follow_refresh_until_stopped(cli: Cli, aiops: AiopsClient, worker) -> None:
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config)
    watched = ok(await cli("agents", "list", "--watch", "1", "--times", "2"))
    assert watched.stdout.count(config.id) == 2 and watched.stdout.count("--- ") == 1
    inbox = ok(await cli("-o", "json", "approvals", "list", "-w", "1", "--times", "2"))
    documents, text, decoder = [], inbox.stdout.strip(), json.JSONDecoder()
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    assert len(documents) == 2 and all(d[0]["action_id"] == action_id for d in documents)

    # --follow prints the last rows, then only rows that landed since.
    async def follow() -> Result:
        return await cli("audit", "tail", "--agent", config.id, "-n", "5", "--follow", "0.5", "--times", "8")

    following = asyncio.create_task(follow())
    await asyncio.sleep(1.0)
    await aiops.approvals.approve(action_id, "alice")
    await aiops.approvals.wait_for_action(action_id)
    tailed = ok(await following)
    assert "approval" in tailed.stdout and "action_finished" in tailed.stdout
    seqs = [int(line.split()[0]) for line in tailed.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "each row printed once, in order"


async def test_status_shows_open_incidents(cli: Cli, aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder", runtime={"incident_window_seconds": 3600})
    await aiops.agents.start(config)
    alerts = [
        SystemEvent(
            id=f"am:fp{n}:firing:1", type="alert", source="db-1", correlation_id="grp-db", severity="high"
        )
        for n in range(3)
    ]
    await aiops.events.send_many(config.id, alerts)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: len(s.incidents) == 1)
    shown = ok(await cli("agents", "status", config.id)).stdout
    assert "open incidents" in shown and "grp-db" in shown and "3/3" in shown and "grouping" in shown
    status = parsed(await cli("-o", "json", "agents", "status", config.id))
    assert status["incidents"][0]["key"] == "grp-db" and status["incidents"][0]["alerts"] == 3


async def test_keys_and_signed_approvals_from_the_cli(cli: Cli, aiops: AiopsClient, worker, tmp_path) -> None:
    key = tmp_path / "alice.json"
    made = parsed(await cli("-o", "json", "keys", "generate", "alice", "--out", str(key)))
    assert key.stat().st_mode & 0o777 == 0o600 and made["public_key"].startswith("ed25519:")
    failed(await cli("keys", "generate", "alice", "--out", str(key)), 2, "exists", "--force")
    assert made["public_key"] in ok(await cli("keys", "show", "--key", str(key))).stdout

    config = agent_config("scripted", approval=team({"alice": made["public_key"]}))
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    shown = ok(
        await cli("approvals", "show", action_id, env={"AIOPS_USER": None, "AIOPS_KEY_FILE": "/nonexistent"})
    )
    assert "--key '<your key file>'" in shown.stdout and "aiops approvals token" in shown.stdout
    assert "--as root" not in shown.stdout  # never the operating system's user
    failed(await cli("approvals", "approve", action_id, "--as", "alice"), 1, "refused", "is not signed")
    # Starting an agent takes --key like every command that changes something: the start is alice's.
    other = agent_config("scripted", approval=team({"alice": made["public_key"]}))
    other_file = write_config(tmp_path / "other.json", other)
    started = ok(
        await cli("agents", "start", "--config", other_file, "--key", str(key), env={"AIOPS_USER": None})
    )
    assert f"started agent {other.id}" in started.stdout
    rows = await eventually(lambda: aiops.audit.rows(agent_id=other.id), lambda rows: bool(rows))
    assert rows[0].actor == "alice"
    failed(
        await cli("agents", "start", "--config", other_file, "--key", str(key), "--as", "bob"), 2, "not bob's"
    )
    failed(
        await cli("approvals", "approve", action_id, "--as", "bob", "--key", str(key)),
        2,
        "alice's key, not bob's",
    )
    nobody = {"AIOPS_USER": None, "AIOPS_KEY_FILE": str(tmp_path / "none.json")}
    failed(await cli("approvals", "approve", action_id, env=nobody), 2, "cannot tell who you are")
    signed = ok(
        await cli(
            "approvals",
            "approve",
            action_id,
            "-m",
            "reviewed",
            env={"AIOPS_USER": None, "AIOPS_KEY_FILE": str(key)},
        )
    )
    assert f"approved {action_id} as alice, signed" in signed.stdout
    done = await aiops.approvals.wait_for_action(action_id)
    assert [(a.approver, a.authenticated, a.comment) for a in done.approvals] == [("alice", True, "reviewed")]
