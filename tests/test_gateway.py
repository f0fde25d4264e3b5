"""The HTTP gateway against real components: a real Alertmanager firing with ``amtool``, the gateway
on uvicorn (in-process, or ``aiops gateway`` as a process), the session's Temporal and a worker.

What each test proves is in its name and docstring; the pure parts (matchers, routing, event ids,
signatures, config versions) are in test_gateway_units.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents import ActionResult, AgentAction, BaseAgent, EventType, SystemEvent, register_agent
from aiops.client import AiopsClient
from aiops.client.events import EventsClient
from aiops.connection import connect
from aiops.contracts.config import AgentConfig
from aiops.gateway import auth
from aiops.gateway.app import Gateway
from aiops.gateway.delivery import Connector
from aiops.gateway.server import Running, running
from tests.helpers import agent_config, eventually
from tests.support.alertmanager import Alertmanager, TcpProxy, free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "gw-test-token"
HMAC_KEY = "gw-test-hmac-key"

# Every event each probe agent decided, by agent id: the tests read what arrived, field by field.
PROBE: dict[str, list[SystemEvent]] = defaultdict(list)


@register_agent("gateway_probe")
class GatewayProbe(BaseAgent):
    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        PROBE[self.agent_id].append(event)
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True)

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.CUSTOM, EventType.DEPLOYMENT]


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("GW_TEST_HMAC", HMAC_KEY)


def gateway_config(version: int, routes: list[dict], **extra: Any) -> dict:
    return {
        "version": version,
        "sources": {
            "am": {"auth": {"type": "bearer", "token": "env:GW_TEST_TOKEN"}},
            "hook": {"auth": {"type": "hmac", "secret": "env:GW_TEST_HMAC"}},
            "slow": {"auth": {"type": "none"}, "rate_limit": {"per_second": 0.2, "burst": 2}},
        },
        "routes": routes,
        "limits": {"max_body_bytes": 16384},
        "delivery": {"attempts": 2, "timeout_seconds": 2, "retry_after_seconds": 1},
        **extra,
    }


def write_config(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    stamp = path.stat().st_mtime_ns + 1_000_000  # seen as a change even within one clock tick
    os.utime(path, ns=(stamp, stamp))
    return path


async def start_probe(aiops: AiopsClient, **overrides: Any) -> AgentConfig:
    config = agent_config("gateway_probe", **overrides)
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    return config


@asynccontextmanager
async def serving(
    config_file: Path, connector: Connector, port: int = 0
) -> AsyncIterator[tuple[Running, Gateway]]:
    gateway = Gateway(config_file, connector, reload_every=0.1)
    async with running(gateway, port=port) as server:
        yield server, gateway


def am_payload(*alerts: dict, group_key: str = '{}:{alertname="DiskFull"}') -> dict:
    return {
        "version": "4",
        "groupKey": group_key,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": list(alerts),
    }


def am_alert(fingerprint: str | None = None, **labels: str) -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "instance": "h1", **labels},
        "annotations": {"summary": "disk full"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.test/graph",
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in a Prometheus exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def processed(aiops: AiopsClient, agent_id: str, count: int) -> Any:
    return await eventually(
        lambda: aiops.agents.status(agent_id), lambda s: s.counters.events_processed >= count
    )


# ----- Alertmanager end to end ------------------------------------------------------------------


@pytest.mark.slow
async def test_alertmanager_alerts_arrive_as_events_with_labels_annotations_and_group_key(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """amtool → Alertmanager → gateway (bearer token) → agent: every routed alert is one event carrying
    its labels, annotations, generatorURL and group key (as correlation id); firing and resolved are two
    events; an alert no route takes is counted as unrouted and Alertmanager sees no failure."""
    disk, load = await start_probe(aiops), await start_probe(aiops)
    routes = [
        {"name": "disk", "matchers": ['alertname="DiskFull"'], "agents": [disk.id]},
        {"name": "load", "match_re": {"alertname": "High.*"}, "agents": [load.id], "event_type": "custom"},
    ]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))
    async with serving(config_file, Connector.of(aiops)) as (server, _):
        am = Alertmanager(f"{server.url}/v1/alertmanager/am", bearer_token=TOKEN).start()
        try:
            await am.fire(
                alertname="DiskFull",
                instance="db-1",
                severity="critical",
                annotations={"summary": "/ is full"},
                generator_url="http://prometheus.test/graph?g0.expr=disk",
            )
            await am.fire(alertname="DiskFull", instance="db-2", severity="warning")
            await am.fire(alertname="HighLoad", instance="web-1", severity="info")
            await am.fire(alertname="NobodysAlert", instance="x")
            await processed(aiops, disk.id, 2)
            await processed(aiops, load.id, 1)

            by_instance = {e.data["labels"]["instance"]: e for e in PROBE[disk.id]}
            db1 = by_instance["db-1"]
            assert db1.id.startswith(f"am:{db1.data['fingerprint']}:firing:")
            assert db1.type == EventType.ALERT and db1.severity == "critical" and db1.source == "db-1"
            assert db1.correlation_id == '{}:{alertname="DiskFull"}' == db1.data["group_key"]
            assert db1.data["annotations"] == {"summary": "/ is full"}
            assert db1.data["generator_url"] == "http://prometheus.test/graph?g0.expr=disk"
            assert by_instance["db-2"].severity == "medium"  # warning → medium
            (high,) = PROBE[load.id]
            assert high.type == EventType.CUSTOM and high.severity == "info"
            assert high.correlation_id == '{}:{alertname="HighLoad"}'

            await am.fire(
                alertname="DiskFull", instance="db-1", severity="critical", end="2000-01-01T00:00:00Z"
            )
            status = await processed(aiops, disk.id, 3)
            resolved = PROBE[disk.id][-1]
            assert resolved.data["status"] == "resolved" and resolved.id != db1.id
            assert resolved.data["fingerprint"] == db1.data["fingerprint"]
            assert status.counters.events_processed == 3

            page = (await httpx.AsyncClient().get(f"{server.url}/metrics")).text
            assert metric(page, "aiops_gateway_events_total", source="am", outcome="unrouted") == 1
            assert metric(page, "aiops_gateway_events_total", source="am", outcome="accepted") >= 4
            assert (await am.notifications())[1] == 0, am.log()
        finally:
            am.stop()


@pytest.mark.slow
async def test_alertmanager_repeats_and_resends_are_decided_once(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """Alertmanager's repeat_interval resends, an alert added again, and the same webhook posted twice
    (a retry) all reach the agent with the same event id: it decides the alert once."""
    probe = await start_probe(aiops)
    config_file = write_config(
        tmp_path / "gw.json", gateway_config(1, [{"name": "all", "agents": [probe.id]}])
    )
    async with serving(config_file, Connector.of(aiops)) as (server, _):
        am = Alertmanager(
            f"{server.url}/v1/alertmanager/am",
            bearer_token=TOKEN,
            group_interval="300ms",
            repeat_interval="1s",
        ).start()
        try:
            await am.fire(alertname="Flapping", instance="h9")
            await processed(aiops, probe.id, 1)
            await am.fire(alertname="Flapping", instance="h9")  # the same alert again: same startsAt
            # Alertmanager repeats the notification every second: wait for two repeats to arrive.
            status = await eventually(
                lambda: aiops.agents.status(probe.id),
                lambda s: s.counters.events_deduplicated >= 2,
                within=20,
            )
            async with httpx.AsyncClient() as http:
                body = am_payload(am_alert(fingerprint="00aa11bb22cc33dd"))
                for _ in range(2):  # a webhook retried by its sender
                    answer = await http.post(f"{server.url}/v1/alertmanager/am", json=body, headers=bearer())
                    assert answer.status_code == 200, answer.text
                status = await eventually(
                    lambda: aiops.agents.status(probe.id),
                    lambda s: s.counters.events_received >= status.counters.events_received + 2,
                )
                page = (await http.get(f"{server.url}/metrics")).text
            await processed(aiops, probe.id, 2)
            ids = [e.id for e in PROBE[probe.id]]
            assert len(ids) == len(set(ids)) == 2, ids
            assert (await aiops.agents.status(probe.id)).counters.events_processed == 2
            assert metric(page, "aiops_gateway_events_total", source="am", outcome="duplicate") >= 3
        finally:
            am.stop()


def start_gateway_process(
    config_file: Path, port: int, address: str, task_queue: str, log: Path
) -> subprocess.Popen:
    """``aiops gateway`` as its own process (the CLI entry); returns once it listens."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiops.cli",
            "--task-queue",
            task_queue,
            "gateway",
            "--routes",
            str(config_file),
            "--port",
            str(port),
            "--log-format",
            "text",
        ],
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 30
    while "gateway ready" not in log.read_text(errors="replace").rsplit("--- start", 1)[-1]:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the gateway did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return process


@pytest.mark.slow
async def test_gateway_killed_mid_stream_loses_nothing_and_processes_nothing_twice(
    aiops: AiopsClient, worker, task_queue: str, address: str, tmp_path: Path
) -> None:
    """`aiops gateway` is SIGKILLed while Alertmanager streams alerts, and started again on the same port:
    Alertmanager's retries deliver what the dead gateway never acknowledged; every alert is decided once."""
    probe = await start_probe(aiops)
    config_file = write_config(
        tmp_path / "gw.json", gateway_config(1, [{"name": "all", "agents": [probe.id]}])
    )
    port, log = free_port(), tmp_path / "gateway.log"
    process = await asyncio.to_thread(start_gateway_process, config_file, port, address, task_queue, log)
    am = Alertmanager(
        f"http://127.0.0.1:{port}/v1/alertmanager/am", bearer_token=TOKEN, group_by=("instance",)
    )
    am.start()
    try:
        total = 24
        for i in range(total):
            await am.fire(alertname="Stream", instance=f"host-{i}")
            if i == total // 3:
                await eventually(
                    lambda: aiops.agents.status(probe.id), lambda s: s.counters.events_received >= 2
                )
                process.send_signal(signal.SIGKILL)
                process.wait()
            if i == 2 * total // 3:
                with log.open("a") as f:
                    f.write("--- start\n")
                process = await asyncio.to_thread(
                    start_gateway_process, config_file, port, address, task_queue, log
                )
        status = await eventually(
            lambda: aiops.agents.status(probe.id), lambda s: s.counters.events_processed >= total, within=60
        )
        instances = sorted(e.data["labels"]["instance"] for e in PROBE[probe.id])
        assert instances == sorted(f"host-{i}" for i in range(total))  # all there, none twice
        assert status.counters.events_processed == total
        _, failed = await am.notifications()
        assert failed > 0, "the kill should have failed some notifications (else the test proved nothing)"
    finally:
        am.stop()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


@pytest.mark.slow
async def test_temporal_unreachable_is_503_and_alertmanager_redelivers_when_it_returns(
    aiops: AiopsClient, worker, task_queue: str, address: str, tmp_path: Path
) -> None:
    """With the connection to Temporal cut (a proxy in front of the session's server), a webhook is
    answered 503 with Retry-After and /readyz fails; Alertmanager keeps retrying, and once Temporal is
    reachable again the alert arrives, once."""
    probe = await start_probe(aiops)
    proxy = TcpProxy(address)
    await proxy.start()

    async def through_proxy() -> AiopsClient:
        return AiopsClient(await connect(address=proxy.address), task_queue)

    config_file = write_config(
        tmp_path / "gw.json", gateway_config(1, [{"name": "all", "agents": [probe.id]}])
    )
    async with serving(config_file, Connector(through_proxy)) as (server, _), httpx.AsyncClient() as http:
        url = f"{server.url}/v1/alertmanager/am"
        assert (await http.get(f"{server.url}/readyz")).status_code == 200
        answer = await http.post(url, json=am_payload(am_alert()), headers=bearer())
        assert answer.status_code == 200, answer.text
        await processed(aiops, probe.id, 1)

        await proxy.cut()
        answer = await http.post(url, json=am_payload(am_alert()), headers=bearer(), timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "nothing is lost: deliver again" in answer.json()["error"]
        ready = await http.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and "failing" in ready.json()["checks"]["temporal"]

        am = Alertmanager(url, bearer_token=TOKEN).start()
        try:
            await am.fire(alertname="WhileDown", instance="h1")
            await eventually(am.notifications, lambda n: n[1] >= 1, within=30)  # refused at least once
            await proxy.start()
            await eventually(
                lambda: aiops.agents.status(probe.id), lambda s: s.counters.events_processed >= 2, within=40
            )
        finally:
            am.stop()
        names = [e.data["labels"]["alertname"] for e in PROBE[probe.id]]
        assert names.count("WhileDown") == 1
        await proxy.cut()


async def test_a_gateway_that_cannot_reach_temporal_starts_and_answers_503(tmp_path: Path) -> None:
    """Temporal at a closed port: the gateway still starts, is alive, not ready, and answers 503."""

    async def nowhere() -> AiopsClient:
        return AiopsClient(await connect(address=f"127.0.0.1:{free_port()}"), "nowhere")

    config_file = write_config(tmp_path / "gw.json", gateway_config(1, [{"name": "all", "agents": ["a"]}]))
    async with serving(config_file, Connector(nowhere)) as (server, _), httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"{server.url}/healthz")).status_code == 200
        ready = await http.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and "cannot reach Temporal" in ready.json()["checks"]["temporal"]
        answer = await http.post(
            f"{server.url}/v1/alertmanager/am", json=am_payload(am_alert()), headers=bearer()
        )
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "cannot reach Temporal" in answer.json()["error"]
        page = (await http.get(f"{server.url}/metrics")).text
        assert metric(page, "aiops_gateway_events_total", source="am", outcome="failed") == 1


# ----- refusals, routing, reload ----------------------------------------------------------------


async def test_every_bad_request_gets_a_4xx_with_a_one_line_reason(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """Malformed JSON, a wrong schema, an oversized body, a bad or missing token, a bad signature, an
    unknown source and a rate-limited source are each refused with their own code and reason; an alert
    for an agent that is not running is a 503 naming it; unrouted alerts are a 200 that says so; and
    after all of it the agent still decides the next good alert."""
    probe = await start_probe(aiops)
    routes = [
        {"name": "orphan", "matchers": ['alertname="Orphan"'], "agents": ["nobody-runs-this"]},
        {"name": "disk", "matchers": ['alertname="DiskFull"'], "agents": [probe.id]},
    ]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))
    async with serving(config_file, Connector.of(aiops)) as (server, _), httpx.AsyncClient() as http:
        am, hook = f"{server.url}/v1/alertmanager/am", f"{server.url}/v1/events/hook"
        good = am_payload(am_alert())

        async def refused(code: int, url: str, **request: Any) -> str:
            answer = await http.post(url, **request)
            assert answer.status_code == code, answer.text
            reason = answer.json()["error"]
            assert reason and "\n" not in reason
            return reason

        assert "malformed JSON" in await refused(400, am, content=b'{"version": "4",', headers=bearer())
        assert "malformed JSON" in await refused(400, am, content=b"\xff\xfe", headers=bearer())
        reason = await refused(422, am, json={"version": "4", "alerts": []}, headers=bearer())
        assert reason.startswith("not an Alertmanager webhook payload (version 4): groupKey: Field required")
        assert "labels" in await refused(
            422, am, json=am_payload({**am_alert(), "labels": {}}), headers=bearer()
        )
        assert "over the limit of 16384" in await refused(413, am, content=b"x" * 20000, headers=bearer())

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream is cut at the limit
            for _ in range(40):
                yield b" " * 1000

        assert "over the limit" in await refused(413, am, content=chunks(), headers=bearer())
        assert await refused(401, am, json=good) == "missing Authorization: Bearer <token>"
        assert await refused(401, am, json=good, headers=bearer("wrong")) == "bad bearer token"
        assert "unknown source 'nope'" in await refused(404, f"{server.url}/v1/alertmanager/nope", json=good)
        assert "unknown source 'default'" in await refused(404, f"{server.url}/v1/alertmanager", json=good)

        event = {"id": f"ci-{uuid.uuid4().hex[:8]}", "type": "deployment", "source": "ci"}
        body = json.dumps(event).encode()
        assert "bad signature" in await refused(
            401, hook, content=body, headers={"X-Aiops-Signature": auth.sign(b"other-key", body)}
        )
        signed = {"X-Aiops-Signature": auth.sign(HMAC_KEY.encode(), body)}
        answer = await http.post(hook, content=body, headers=signed)
        assert answer.status_code == 200 and answer.json()["unrouted"] == 1  # no route takes deployments
        no_id = json.dumps({"type": "alert", "source": "ci"}).encode()
        reason = await refused(
            422, hook, content=no_id, headers={"X-Aiops-Signature": auth.sign(HMAC_KEY.encode(), no_id)}
        )
        assert reason.startswith("the event: id: field required")

        slow = f"{server.url}/v1/alertmanager/slow"
        unrouted = am_payload(am_alert(alertname="Whatever"))
        for _ in range(2):
            answer = await http.post(slow, json=unrouted)
            assert answer.status_code == 200 and answer.json()["results"][0]["outcome"] == "unrouted"
        answer = await http.post(slow, json=unrouted)
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
        assert "over its rate limit" in answer.json()["error"]

        answer = await http.post(
            am, json=am_payload(am_alert(alertname="Orphan"), am_alert()), headers=bearer()
        )
        assert answer.status_code == 503, answer.text
        assert "agent 'nobody-runs-this' is not running" in answer.json()["error"]
        assert answer.json()["delivered_agents"] == [
            probe.id
        ]  # the other agent got its alert: a retry is a duplicate

        answer = await http.post(am, json=good, headers=bearer())
        assert answer.status_code == 200 and answer.json()["delivered"] == 1
        status = await processed(aiops, probe.id, 1)
        assert status.state == "running" and status.counters.events_rejected == 0
        page = (await http.get(f"{server.url}/metrics")).text
        assert (
            metric(page, "aiops_gateway_requests_total", endpoint="alertmanager", source="am", code="401")
            == 2
        )
        assert (
            metric(page, "aiops_gateway_requests_total", endpoint="alertmanager", source="slow", code="503")
            == 1
        )
        assert metric(page, "aiops_gateway_events_total", source="slow", outcome="unrouted") == 2
        assert metric(page, "aiops_gateway_delivery_seconds_count", source="am") >= 1


async def test_routes_hot_reload_and_a_route_with_a_config_starts_its_agent(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """/v1/events (HMAC-signed) routed by data labels; a new config version moves the route to an agent
    that is not running but whose config file the route names (signal-with-start); a changed file with
    the same version is refused with a one-line reason while the version in force keeps working."""
    first = await start_probe(aiops)
    second = agent_config("gateway_probe")
    (tmp_path / "second.json").write_text(second.model_dump_json())
    web = {"name": "web", "matchers": ['team="web"'], "agents": [first.id]}
    config_file = write_config(tmp_path / "gw.yaml", gateway_config(1, [web]))
    async with serving(config_file, Connector.of(aiops)) as (server, gateway), httpx.AsyncClient() as http:

        async def send(event_id: str) -> httpx.Response:
            body = json.dumps(
                [{"id": event_id, "type": "alert", "source": "ci", "data": {"labels": {"team": "web"}}}]
            ).encode()
            return await http.post(
                f"{server.url}/v1/events/hook",
                content=body,
                headers={"X-Aiops-Signature": auth.sign(HMAC_KEY.encode(), body)},
            )

        answer = await send("ev-1")
        assert answer.status_code == 200 and answer.json()["results"][0]["agents"] == [first.id]
        await processed(aiops, first.id, 1)

        moved = {**web, "agents": [second.id], "agent_configs": {second.id: "second.json"}}
        write_config(config_file, gateway_config(2, [moved]))
        await eventually(lambda: http.get(f"{server.url}/readyz"), lambda r: r.json()["config_version"] == 2)
        answer = await send("ev-2")
        assert answer.status_code == 200, answer.text
        await processed(aiops, second.id, 1)  # started by the event
        assert [e.id for e in PROBE[second.id]] == ["ev-2"]

        write_config(config_file, gateway_config(2, [web]))  # changed, but the same version
        ready = await eventually(
            lambda: http.get(f"{server.url}/readyz"), lambda r: "last_config_refusal" in r.json()
        )
        assert "version 2 is not above the version in force (2)" in ready.json()["last_config_refusal"]
        assert ready.json()["config_version"] == 2
        answer = await send("ev-3")
        assert answer.json()["results"][0]["agents"] == [second.id]
        page = (await http.get(f"{server.url}/metrics")).text
        assert metric(page, "aiops_gateway_config_version") == 2
        assert metric(page, "aiops_gateway_config_reloads_total", result="refused") == 1
        assert gateway.holder.current.version == 2


@pytest.mark.slow
async def test_an_alertmanager_storm_is_one_action_per_incident(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """Ten alerts in two Alertmanager groups reach an agent with an incident window: it decides twice,
    each time with every alert of its group in view, and proposes two actions, not ten."""
    config = agent_config("scripted", runtime={"incident_window_seconds": 3})
    await aiops.agents.start(config)
    routes = [{"name": "all", "matchers": ['alertname=~"DiskFull|HighLoad"'], "agents": [config.id]}]
    config_file = write_config(tmp_path / "gw.json", gateway_config(1, routes))
    async with serving(config_file, Connector.of(aiops)) as (server, _):
        am = Alertmanager(f"{server.url}/v1/alertmanager/am", bearer_token=TOKEN).start()
        try:
            for n in range(6):
                await am.fire(alertname="DiskFull", instance=f"db-{n}", severity="critical")
            for n in range(4):
                await am.fire(alertname="HighLoad", instance=f"web-{n}", severity="warning")
            status = await eventually(
                lambda: aiops.agents.status(config.id),
                lambda s: s.counters.actions_succeeded == 2 and sum(i.alerts for i in s.incidents) >= 10,
                within=60,
            )
        finally:
            am.stop()
    assert status.counters.actions_proposed == 2
    assert sorted(i.key for i in status.incidents) == [
        '{}:{alertname="DiskFull"}',
        '{}:{alertname="HighLoad"}',
    ]
    for incident in status.incidents:
        record = await aiops.approvals.action(
            aiops.approvals.action_id(config.id, incident.action_event_id or "")
        )
        assert record.event.type == EventType.ALERT and record.event.correlation_id == incident.key


# ----- coalescing: concurrent requests for one agent share its intake updates --------------------


# One intake update per agent under way; the requests arriving meanwhile wait and go together.
ONE_AT_A_TIME = {"attempts": 2, "timeout_seconds": 2, "retry_after_seconds": 1, "in_flight_per_agent": 1}


class HeldEvents(EventsClient):
    """The real event delivery whose first intake call waits until the test lets it go: the requests
    that arrive meanwhile queue in the agent's lane, deterministically."""

    def __init__(self, aiops: AiopsClient) -> None:
        super().__init__(aiops.connection, aiops.agents)
        self.release = asyncio.Event()
        self.calls: list[int] = []  # events per intake call

    async def submit(self, agent_id: str, events: Any, *args: Any, **kwargs: Any) -> Any:
        events = list(events)
        self.calls.append(len(events))
        if len(self.calls) == 1:
            await self.release.wait()
        return await super().submit(agent_id, events, *args, **kwargs)


class HeldClient(AiopsClient):
    """The real client, its event delivery held (see ``HeldEvents``)."""

    def __init__(self, aiops: AiopsClient) -> None:
        super().__init__(aiops.client, aiops.task_queue)
        self.events = held = HeldEvents(self)
        self.release, self.calls = held.release, held.calls


async def hold_and_queue(
    held: HeldClient, gateway: Gateway, http: httpx.AsyncClient, url: str, agent_id: str, bodies: list[dict]
) -> list[httpx.Response]:
    """Post ``bodies`` at once while the first one's update is held; release it once the rest wait."""
    first = asyncio.create_task(http.post(url, json=bodies[0], headers=bearer(), timeout=30))
    await eventually(lambda: asyncio.sleep(0), lambda _: len(held.calls) == 1, interval=0.01)
    rest = [asyncio.create_task(http.post(url, json=b, headers=bearer(), timeout=30)) for b in bodies[1:]]
    coalescer = gateway.deliverer.coalescer(gateway.holder.current.config.delivery)
    await eventually(
        lambda: asyncio.sleep(0), lambda _: coalescer.waiting(agent_id) == len(rest), interval=0.01
    )
    held.release.set()
    return [await first, *[await task for task in rest]]


async def test_concurrent_requests_for_one_agent_share_updates_and_each_gets_its_own_answer(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """Six webhooks for one agent at once, one of them a resend of another: the five that arrive while
    the first one's update is under way go to the agent together, in one update; every request is
    answered 200 with the results of exactly its own alerts; every alert is decided once."""
    probe = await start_probe(aiops)
    config_file = write_config(
        tmp_path / "gw.json",
        gateway_config(1, [{"name": "all", "agents": [probe.id]}], delivery=ONE_AT_A_TIME),
    )
    held = HeldClient(aiops)
    async with serving(config_file, Connector.of(held)) as (server, gateway), httpx.AsyncClient() as http:
        bodies = [am_payload(*(am_alert(instance=f"r{r}-a{a}") for a in range(r + 1))) for r in range(5)]
        bodies.append(bodies[2])  # a sender's retry of the third webhook, in the same batch
        answers = await hold_and_queue(
            held, gateway, http, f"{server.url}/v1/alertmanager/am", probe.id, bodies
        )
        assert held.calls == [1, 2 + 3 + 4 + 5 + 3]  # the first alone, then the five as one update

        for body, answer in zip(bodies, answers, strict=True):
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert [r["fingerprint"] for r in results] == [a["fingerprint"] for a in body["alerts"]]
            assert all(r["outcome"] == "delivered" and r["agents"] == [probe.id] for r in results)
            assert answer.json()["delivered"] == len(body["alerts"])

        status = await processed(aiops, probe.id, 15)
        assert status.counters.events_processed == 15 and status.counters.events_deduplicated == 3
        ids = [e.id for e in PROBE[probe.id]]
        assert len(ids) == len(set(ids)) == 15
        page = (await http.get(f"{server.url}/metrics")).text
        assert metric(page, "aiops_gateway_events_total", source="am", outcome="accepted") == 15
        assert metric(page, "aiops_gateway_events_total", source="am", outcome="duplicate") == 3


async def test_a_refused_coalesced_update_is_503_to_each_of_its_requests_and_redelivered_later(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    """A paused agent with room for four events: the first webhook (two alerts) is taken; the next two
    (two alerts each) wait, go together and do not fit, so the agent refuses that update and both
    requests are answered 503 (nothing is lost: deliver again). Delivered again once the agent runs
    (one of them had in fact been taken before the refusal), every alert is decided exactly once."""
    probe = await start_probe(aiops, runtime={"max_queue": 4})
    await aiops.agents.pause(probe.id)
    await eventually(lambda: aiops.agents.status(probe.id), lambda s: s.state == "paused")
    config_file = write_config(
        tmp_path / "gw.json",
        gateway_config(1, [{"name": "all", "agents": [probe.id]}], delivery=ONE_AT_A_TIME),
    )
    held = HeldClient(aiops)
    async with serving(config_file, Connector.of(held)) as (server, gateway), httpx.AsyncClient() as http:
        url = f"{server.url}/v1/alertmanager/am"
        bodies = [am_payload(am_alert(instance=f"r{r}-a0"), am_alert(instance=f"r{r}-a1")) for r in range(3)]
        first, *refused = await hold_and_queue(held, gateway, http, url, probe.id, bodies)
        assert held.calls[:2] == [2, 4]  # then, the two again (refused for now: retried, still full)
        assert first.status_code == 200, first.text
        for answer in refused:
            assert answer.status_code == 503, answer.text
            assert "queue is full" in answer.json()["error"] and "deliver again" in answer.json()["error"]
            assert answer.json()["failed_agents"] == {probe.id: answer.json()["failed_agents"][probe.id]}
            assert answer.headers["retry-after"] == "1"

        await aiops.agents.resume(probe.id)
        await processed(aiops, probe.id, 4)
        for body in bodies[1:]:  # the sender's retries
            answer = await http.post(url, json=body, headers=bearer())
            assert answer.status_code == 200, answer.text
        status = await processed(aiops, probe.id, 6)
        instances = sorted(e.data["labels"]["instance"] for e in PROBE[probe.id])
        assert instances == sorted(f"r{r}-a{a}" for r in range(3) for a in range(2))  # all, none twice
        assert status.counters.events_processed == 6
        page = (await http.get(f"{server.url}/metrics")).text
        assert metric(page, "aiops_gateway_events_total", source="am", outcome="failed") == 4
