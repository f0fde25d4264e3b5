"""Hostile input at every entry point the client, the CLI, the gateway and the llm plugin own.

Each value is tried at its limit, just over it and far over it (5 MB), with control characters,
deep nesting, NaN and wrong types: every one is refused with a message that says what, with no
traceback, no 5xx and nothing stored, or taken and decided. Against real servers (Temporal dev
server, PostgreSQL); the stuck-task guard (tests/conftest.py) reads every history these tests touch.
The llm plugin's model answers and tool arguments: tests/test_hostile_llm.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner, Result

from aiops.cli import app
from aiops.client import AiopsClient
from aiops.client.errors import ConfigRefusedError, EventTooLargeError
from aiops.contracts.limits import MAX_EVENT_BYTES
from aiops.gateway import auth
from aiops.gateway.delivery import Connector
from tests.conftest import STUCK_TASK_MARKER, failed_workflow_tasks
from tests.helpers import agent_config, eventually
from tests.support.postgres_server import PostgresServer
from tests.test_gateway import (  # importing it registers the gateway_probe agent type
    HMAC_KEY,
    PROBE,
    TOKEN,
    am_alert,
    am_payload,
    bearer,
    gateway_config,
    serving,
    start_probe,
    write_config,
)

FIVE_MB = 5 * 1024 * 1024
RUNNER = CliRunner()


def sized_event(total: int, **fields: Any) -> dict[str, Any]:
    """An event dict whose JSON is exactly ``total`` bytes (as the intake measures it)."""
    base = {"id": fields.pop("id", f"evt-{uuid.uuid4().hex[:12]}"), "type": "alert", "source": "x", **fields}
    base["data"] = {"blob": ""}
    from aiops.contracts.models import SystemEvent

    empty = len(SystemEvent.model_validate(base).model_dump_json())
    base["data"] = {"blob": "a" * (total - empty)}
    return base


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# ----- the stuck-task guard itself ------------------------------------------------------------------


@workflow.defn(name="AlwaysFailingTask")
class AlwaysFailingTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in workflow code")  # not an ApplicationError: the task fails, retried


@pytest.mark.allow_failed_workflow_tasks(reason="provokes a failed workflow task to see the guard name it")
async def test_the_stuck_task_guard_names_the_workflow_and_the_failure(client: Client) -> None:
    from datetime import UTC, datetime

    since = datetime.now(UTC) - timedelta(seconds=1)
    queue = f"tq-{uuid.uuid4()}"
    workflow_id = f"always-failing-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[AlwaysFailingTask], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await client.start_workflow(AlwaysFailingTask.run, id=workflow_id, task_queue=queue)
        problems = await eventually(lambda: failed_workflow_tasks(client, since), bool, within=30)
    await handle.terminate("test over")
    [problem] = [p for p in problems if p.startswith(workflow_id)]
    assert "AlwaysFailingTask" in problem and "a bug in workflow code" in problem, problem
    assert "WORKFLOW_WORKER_UNHANDLED_FAILURE" in problem, problem
    assert STUCK_TASK_MARKER == "allow_failed_workflow_tasks"


# ----- the client: events checked before anything is sent ------------------------------------------


async def test_the_client_refuses_an_oversized_event_at_once_and_takes_one_at_the_limit(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("example")
    await aiops.agents.start(config)
    at_limit = sized_event(MAX_EVENT_BYTES)
    [answer] = await aiops.events.send_many(config.id, [at_limit])
    assert answer.outcome.value == "accepted"

    just_over = sized_event(MAX_EVENT_BYTES + 1)
    far_over = sized_event(FIVE_MB)
    for payload in (just_over, far_over):
        with pytest.raises(EventTooLargeError, match=f"over the {MAX_EVENT_BYTES}-byte limit"):
            await aiops.events.send(config.id, payload)
        with pytest.raises(EventTooLargeError, match=payload["id"]):
            await aiops.events.send_many(config.id, [sized_event(100), payload])  # nothing of it sent
    with pytest.raises(EventTooLargeError, match="nested too deeply"):
        deep = {"id": "deep", "type": "alert", "source": "x", "data": {"n": nested(10_000)}}
        await aiops.events.send(config.id, deep)

    # A batch of events at the limit goes in several updates, each under the payload limit.
    batch = [sized_event(MAX_EVENT_BYTES) for _ in range(80)]  # 2.5 MB together
    answers = await aiops.events.send_many(config.id, batch)
    assert [a.outcome.value for a in answers] == ["accepted"] * 80
    status = await aiops.agents.status(config.id)
    assert status.counters.events_received == 81, status.counters


# ----- the CLI: files and flags of `events send`, `agents start --config` ---------------------------


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


async def cli(env: dict[str, str | None], *args: str) -> Result:
    return await asyncio.to_thread(RUNNER.invoke, app, list(args), env=env)


def refused(result: Result, code: int, *needles: str) -> str:
    message = result.stderr + result.stdout
    assert result.exit_code == code, f"exit {result.exit_code}: {message}"
    assert "Traceback" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


async def test_events_send_refuses_oversized_nan_deep_and_wrong_files_before_connecting(
    cli_env: dict[str, str | None], tmp_path: Path
) -> None:
    offline = {**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}  # a refusal here never needs a server
    send = ("events", "send", "some-agent")
    cases: list[tuple[str, Any, tuple[str, ...]]] = [
        ("just-over.json", sized_event(MAX_EVENT_BYTES + 1), ("over the", f"{MAX_EVENT_BYTES}-byte limit")),
        ("far-over.json", sized_event(FIVE_MB), ("over the", f"{MAX_EVENT_BYTES}-byte limit")),
        ("list-of-big.json", [sized_event(100), sized_event(MAX_EVENT_BYTES * 2)], ("[1]", "over the")),
        ("wrong-type.json", {"id": 5, "type": "alert", "source": ["x"]}, ("invalid event",)),
        ("control.json", {"id": "a\u202e", "type": "alert", "source": "x\x00"}, ("invalid event",)),
    ]
    for name, document, needles in cases:
        path = tmp_path / name
        path.write_text(json.dumps(document))
        refused(await cli(offline, *send, "--file", str(path)), 2, *needles)
    deep = tmp_path / "deep.json"  # 10,000 nested lists: more than json.dumps can even write
    deep.write_text(
        '{"id": "d", "type": "alert", "source": "x", "data": {"n": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    )
    refused(await cli(offline, *send, "--file", str(deep)), 2, "nested too deeply")
    nan = tmp_path / "nan.json"
    nan.write_text('{"id": "n", "type": "alert", "source": "x", "data": {"v": NaN}}')
    refused(await cli(offline, *send, "--file", str(nan)), 2, "NaN")
    refused(await cli(offline, *send, "-t", "alert", "-s", "x", "--data", '{"v": Infinity}'), 2, "Infinity")
    big_data = json.dumps({"blob": "a" * (MAX_EVENT_BYTES + 10)})
    refused(await cli(offline, *send, "-t", "alert", "-s", "x", "--data", big_data), 2, "over the")


@pytest.mark.parametrize(
    ("agent_type", "settings", "needle"),
    [
        ("disk", {"roots": [{"path": "/", "globs": ["*.log"]}]}, "'/' may not be a cleanup root"),
        ("disk", {"roots": [{"path": "/srv/logs", "globs": ["*"]}]}, "settings.roots"),
        ("service", {"services": [{"name": "web; rm -rf /"}]}, "supervisor program name"),
        ("service", {"services": [{"name": "web", "health_url": "file:///etc/shadow"}]}, "health_url"),
        ("tunable", {"backup": {"api_key": "env:AIOPS_NOT_SET_ANYWHERE"}}, "AIOPS_NOT_SET_ANYWHERE"),
    ],
)
async def test_agents_start_refuses_a_config_the_agent_type_refuses_before_anything_is_stored(
    cli_env: dict[str, str | None],
    aiops: AiopsClient,
    pool: asyncpg.Pool,
    worker,
    tmp_path: Path,
    agent_type: str,
    settings: dict[str, Any],
    needle: str,
) -> None:
    config = agent_config(agent_type, settings=settings)
    path = tmp_path / "agent.json"
    path.write_text(config.model_dump_json())
    message = refused(await cli(cli_env, "agents", "start", "--config", str(path)), 1, needle)
    assert "nothing was stored or started" in message
    with pytest.raises(ConfigRefusedError, match=needle.replace("[", r"\[")):
        await aiops.agents.start(config)
    assert not await aiops.agents.is_running(config.id)
    stored = await pool.fetchval("SELECT count(*) FROM agent_config_versions WHERE agent_id = $1", config.id)
    assert stored == 0


# ----- the gateway: every HTTP route --------------------------------------------------------------


async def test_the_gateway_refuses_hostile_bodies_with_the_reason_and_never_a_5xx(
    aiops: AiopsClient, worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", HMAC_KEY)

    probe = await start_probe(aiops)
    routes = [{"name": "all", "agents": [probe.id]}]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))  # max_body_bytes 16384
    limit = 16384
    async with (
        serving(config_file, Connector.of(aiops)) as (server, _),
        httpx.AsyncClient(timeout=30) as http,
    ):
        events = f"{server.url}/v1/events/slow"  # auth none; a rate limit of 0.2/s, burst 2
        am = f"{server.url}/v1/alertmanager/am"

        async def post(url: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
            answer = await http.post(
                url, content=content, headers={"Content-Type": "application/json", **(headers or {})}
            )
            assert answer.status_code < 500 or answer.status_code == 503, answer.text
            assert "Traceback" not in answer.text
            return answer

        hostile: list[tuple[bytes, int, str]] = [
            (b"x" * (limit + 1), 413, "over the limit"),
            (b"x" * FIVE_MB, 413, "over the limit"),
            (b"[" * 8000 + b"]" * 8000, 400, "nested too deeply"),
            (
                b'{"id": "n", "type": "alert", "source": "x", "data": {"v": NaN}}',
                400,
                "NaN is not a JSON number",
            ),
            (b'{"id": "i", "type": "alert", "source": "x", "data": {"v": -Infinity}}', 400, "Infinity"),
            (
                json.dumps({"id": "web\n", "type": "alert", "source": "x"}).encode(),
                422,
                "control or invisible",
            ),
            (json.dumps({"id": "a", "type": "alert", "source": "x\u202e"}).encode(), 422, "\\u202e"),
            (json.dumps({"id": 5, "type": "alert", "source": ["x"]}).encode(), 422, "invalid event"),
            (json.dumps("just a string").encode(), 422, "must be a JSON object"),
            (b"\xff\xfe not utf-8", 400, "malformed JSON"),
        ]
        hook = f"{server.url}/v1/events/hook"

        for body, status, needle in hostile:
            answer = await post(hook, body, {"X-Aiops-Signature": auth.sign(HMAC_KEY.encode(), body)})
            assert answer.status_code == status, (body[:80], answer.text)
            assert needle in answer.json()["error"], (needle, answer.text)

        # At the limit: taken and decided. Over the rate limit: 503 with Retry-After (never 429).
        at_limit = json.dumps(sized_event(limit - 200)).encode()
        answer = await post(hook, at_limit, {"X-Aiops-Signature": auth.sign(HMAC_KEY.encode(), at_limit)})
        assert answer.status_code == 200 and answer.json()["delivered"] == 1, answer.text
        for _ in range(2):
            await post(events, json.dumps(sized_event(100)).encode())
        limited = await post(events, json.dumps(sized_event(100)).encode())
        assert limited.status_code == 503 and int(limited.headers["retry-after"]) >= 1
        assert "over its rate limit" in limited.json()["error"]

        # Bidi and control characters in alert labels: decided, with the source written visibly.
        planted = am_alert(instance="db-1\u202e\u2066txt.exe")
        answer = await post(am, json.dumps(am_payload(planted)).encode(), bearer())
        assert answer.status_code == 200 and answer.json()["delivered"] == 1, answer.text
        status = await eventually(
            lambda: aiops.agents.status(probe.id), lambda s: s.counters.events_processed >= 4
        )
        assert status.counters.events_rejected == 0 and status.counters.events_received == 4

        [alert] = [e for e in PROBE[probe.id] if e.id.startswith("am:")]
        assert alert.source == "db-1\\u202e\\u2066txt.exe" and alert.data["labels"]["instance"].endswith(
            "txt.exe"
        )


async def test_a_route_config_its_type_refuses_is_503_until_fixed_then_every_alert_is_decided(
    aiops: AiopsClient, worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", HMAC_KEY)

    agent_id = f"tunable-{uuid.uuid4().hex[:8]}"
    refused_config = agent_config(
        "tunable",
        id=agent_id,
        integrations=[
            {
                "name": "vault",
                "type": "hashicorp_vault",
                "config": {"url": "https://v", "token": "env:AIOPS_HOSTILE_UNSET"},
            }
        ],
    )
    agent_file = tmp_path / "agent.json"
    agent_file.write_text(refused_config.model_dump_json())
    routes = [{"name": "all", "agents": [agent_id], "agent_configs": {agent_id: "agent.json"}}]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))
    alerts = [am_alert(instance=f"db-{i}") for i in range(3)]
    async with (
        serving(config_file, Connector.of(aiops)) as (server, gateway),
        httpx.AsyncClient(timeout=30) as http,
    ):
        am = f"{server.url}/v1/alertmanager/am"
        answer = await http.post(am, json=am_payload(*alerts), headers=bearer())
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert "AIOPS_HOSTILE_UNSET" in answer.json()["error"], answer.text
        assert "nothing was stored or started" in answer.json()["error"]
        assert not await aiops.agents.is_running(agent_id), "no run was started to park the alerts in"

        fixed = refused_config.model_copy(update={"integrations": []})
        write_config(agent_file, fixed.model_dump(mode="json"))
        await eventually(lambda: _version_after(gateway, fixed), bool, within=10)
        answer = await eventually(
            lambda: http.post(am, json=am_payload(*alerts), headers=bearer()), lambda a: a.status_code == 200
        )
        assert answer.json()["delivered"] == 3
    status = await eventually(
        lambda: aiops.agents.status(agent_id), lambda s: s.counters.events_processed >= 3
    )
    assert status.counters.events_received == 3 and status.state.value == "running"


async def _version_after(gateway: Any, fixed: Any) -> bool:
    return gateway.holder.current.agent_configs.get(fixed.id) == fixed


async def test_config_files_are_refused_at_the_limit_of_every_field_with_nothing_stored(
    cli_env: dict[str, str | None], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`agents start --config` and `config apply`: 5 MB, NaN, deep nesting, control characters and
    wrong types are refused before anything connects (exit 2), each with what is wrong."""
    offline = {**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    good = json.loads(agent_config("example").model_dump_json())
    deep = json.dumps(good)[:-1] + ', "settings": {"n": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    cases: list[tuple[str, str, str]] = [
        ("big", json.dumps({**good, "settings": {"blob": "x" * FIVE_MB}}), "over the 8192-character limit"),
        (
            "huge",
            json.dumps({**good, "settings": {f"k{i}": "x" * 8000 for i in range(10)}}),
            "65536-byte limit",
        ),
        ("nan", json.dumps(good)[:-1] + ', "thresholds": {"cpu": NaN}}', "NaN is not a JSON number"),
        ("deep", deep, "nested too deeply"),
        ("control", json.dumps({**good, "id": "web\n"}), "id:"),
        ("bidi", json.dumps({**good, "id": "web\u202e"}), "id:"),
        ("types", json.dumps({**good, "enabled": "yes please", "retry": []}), "invalid config"),
        ("list", json.dumps([good]), "must be a JSON object"),
    ]
    for name, text, needle in cases:
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        for command in (("agents", "start", "--config", str(path)), ("config", "apply", str(path))):
            refused(await cli(offline, *command), 2, needle)
    stored = await pool.fetchval("SELECT count(*) FROM agent_config_versions WHERE agent_id = $1", good["id"])
    assert stored == 0
