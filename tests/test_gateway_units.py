"""The gateway's pure parts, without a server: matchers, routing, payload conversion, event ids,
authentication, the rate limit and loading (and refusing) config versions."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from aiops.contracts.agent import EventAnswer, EventOutcome
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import EventType, Severity, SystemEvent
from aiops.gateway import auth
from aiops.gateway.alertmanager import WebhookPayload, alert_event, alert_event_id
from aiops.gateway.config import Auth, ConfigProblem, RateLimit, load_config
from aiops.gateway.delivery import COALESCE_MAX_BYTES, COALESCE_MAX_EVENTS, Coalescer
from aiops.gateway.matchers import Matcher
from aiops.gateway.ratelimit import RateLimiter
from aiops.gateway.reload import ConfigHolder
from aiops.gateway.routing import Route, event_labels, select_routes
from tests.helpers import agent_config

# ----- matchers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="DiskFull"', {"alertname": "DiskFull"}, True),
        ('alertname="DiskFull"', {"alertname": "DiskFullish"}, False),
        ("alertname=DiskFull", {"alertname": "DiskFull"}, True),
        ('env!="prod"', {}, True),  # an absent label is the empty string, as in Alertmanager
        ('env!="prod"', {"env": "prod"}, False),
        ('env=""', {}, True),
        ('severity=~"crit|high"', {"severity": "crit"}, True),
        ('severity=~"crit|high"', {"severity": "critical"}, False),  # anchored at both ends
        ('severity!~"info|none"', {"severity": "warning"}, True),
        ('severity!~"info|none"', {"severity": "info"}, False),
        ('instance=~"db-.*"', {"instance": "db-1:9100"}, True),
        ('summary="a \\"quoted\\" b"', {"summary": 'a "quoted" b'}, True),
    ],
)
def test_matchers_follow_alertmanager(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["alertname", "=x", 'a=~"("', 'a="unclosed', "a=x,y", "1abc=x"])
def test_bad_matchers_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression|quote|quoted"):
        Matcher.parse(text)


# ----- routing ----------------------------------------------------------------------------------


def routes() -> list[Route]:
    return [
        Route(name="disk", matchers=['alertname=~"Disk.*"'], agents=["disk-agent"]),
        Route(
            name="db-audit",
            match={"team": "db"},
            agents=["audit-agent"],
            event_type=EventType.CUSTOM,
            **{"continue": True},
        ),
        Route(name="db", match_re={"instance": "db-.*"}, agents=["db-agent", "pager"]),
        Route(name="ci-only", sources=["ci"], agents=["ci-agent"]),
    ]


def names(chosen: list[Route]) -> list[str]:
    return [r.name for r in chosen]


def test_the_first_matching_route_wins_and_continue_goes_on() -> None:
    table = routes()
    assert names(select_routes(table, {"alertname": "DiskFull", "instance": "db-1"}, "am")) == ["disk"]
    assert names(select_routes(table, {"alertname": "Slow", "team": "db", "instance": "db-1"}, "am")) == [
        "db-audit",
        "db",
    ]
    assert names(select_routes(table, {"alertname": "Slow", "team": "web"}, "am")) == []
    assert names(select_routes(table, {"alertname": "Slow"}, "ci")) == ["ci-only"]


def test_severity_mapping_source_label_and_agent_ids() -> None:
    route = Route(name="r", agents=["a", "a", "b"], severity_map={"warning": "high"}, default_severity="low")
    assert route.agents == ["a", "b"]
    assert route.severity({"severity": "critical"}) == Severity.CRITICAL
    assert route.severity({"severity": "Warning"}) == Severity.HIGH  # the route's map wins
    assert route.severity({"severity": "weird"}) == Severity.LOW
    assert route.severity({}) == Severity.LOW
    assert route.event_source({"job": "node", "alertname": "X"}) == "node"
    assert route.event_source({"instance": "h1", "job": "node"}) == "h1"
    with pytest.raises(ValidationError, match="not valid agent ids"):
        Route(name="r", agents=["bad id!"])
    with pytest.raises(ValidationError, match="agent_configs names agents"):
        Route(name="r", agents=["a"], agent_configs={"b": Path("b.json")})


def test_generic_events_are_routed_on_type_source_severity_and_data_labels() -> None:
    e = SystemEvent(type="alert", source="ci", severity="high", data={"labels": {"team": "web", "n": 3}})
    assert event_labels(e) == {"team": "web", "n": "3", "type": "alert", "source": "ci", "severity": "high"}


# ----- Alertmanager payloads --------------------------------------------------------------------


def payload(*alerts: dict, group_key: str = '{}:{alertname="DiskFull"}') -> dict:
    return {
        "version": "4",
        "groupKey": group_key,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am.example:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
        "someFutureField": {"ignored": True},
    }


def alert(status: str = "firing", starts: str = "2024-05-01T10:00:00.123456789Z", **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": "host1", "severity": "critical", **labels},
        "annotations": {"summary": "disk / is full"},
        "startsAt": starts,
        "endsAt": "2024-05-01T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom.example:9090/graph?g0.expr=disk",
        "fingerprint": "a1b2c3d4e5f60718",
    }


def test_an_alert_becomes_an_event_carrying_labels_annotations_url_and_group_key() -> None:
    body = WebhookPayload.model_validate(payload(alert()))
    route = Route(name="disk", agents=["disk-agent"])
    e = alert_event(body, body.alerts[0], route, "am")
    assert e.id == "am:a1b2c3d4e5f60718:firing:1714557600123456"
    assert e.type == EventType.ALERT
    assert e.severity == Severity.CRITICAL
    assert e.source == "host1"
    assert e.correlation_id == '{}:{alertname="DiskFull"}'
    assert e.timestamp == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert e.data["labels"]["alertname"] == "DiskFull"
    assert e.data["annotations"] == {"summary": "disk / is full"}
    assert e.data["generator_url"] == "http://prom.example:9090/graph?g0.expr=disk"
    assert e.data["group_key"] == e.correlation_id
    assert e.data["status"] == "firing"
    assert e.data["ends_at"] is None
    assert e.data["route"] == "disk"
    json.dumps(e.model_dump(mode="json"))  # travels as JSON


def test_event_ids_are_stable_across_resends_and_new_on_resolve_or_refire() -> None:
    route = Route(name="r", agents=["a"])

    def event_id(raw: dict) -> str:
        body = WebhookPayload.model_validate(payload(raw))
        return alert_event(body, body.alerts[0], route, "am").id

    first = event_id(alert())
    assert event_id(alert()) == first  # Alertmanager's retry or repeat
    assert event_id(alert(starts="2024-05-01T12:00:00.123456+02:00")) == first  # same instant, other zone
    resolved = event_id(alert("resolved"))
    assert resolved != first and ":resolved:" in resolved
    assert event_id(alert(starts="2024-05-01T11:00:00Z")) != first  # fired again later
    assert alert_event_id("f", "firing", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == "am:f:firing:1000000"


def test_a_missing_fingerprint_is_derived_from_the_labels() -> None:
    raw = alert()
    del raw["fingerprint"]
    reordered = dict(reversed(list(alert()["labels"].items())))
    other = {**alert(), "labels": reordered}
    del other["fingerprint"]
    a = WebhookPayload.model_validate(payload(raw)).alerts[0]
    b = WebhookPayload.model_validate(payload(other)).alerts[0]
    assert a.stable_fingerprint() == b.stable_fingerprint() and len(a.stable_fingerprint()) == 16


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"version": "3"}, "version"),
        ({"alerts": []}, "alerts"),
        ({"groupKey": None}, "groupKey"),
        ({"alerts": [{**alert(), "status": "pending"}]}, "status"),
        ({"alerts": [{**alert(), "fingerprint": "../../etc"}]}, "fingerprint"),
        ({"alerts": [{**alert(), "startsAt": "yesterday"}]}, "startsAt"),
    ],
)
def test_wrong_payloads_are_refused_naming_the_field(change: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        WebhookPayload.model_validate({**payload(alert()), **change})
    assert problem in str(err.value)


# ----- authentication and rate limit ------------------------------------------------------------


def test_bearer_tokens() -> None:
    bearer = Auth(type="bearer", token="env:X")
    assert auth.check(bearer, b"s3cret", {"authorization": "Bearer s3cret"}, b"") is None
    assert auth.check(bearer, b"s3cret", {"authorization": "bearer s3cret"}, b"") is None
    assert auth.check(bearer, b"s3cret", {"authorization": "Bearer nope"}, b"") == "bad bearer token"
    assert "missing" in (auth.check(bearer, b"s3cret", {}, b"") or "")
    assert "Bearer <token>" in (auth.check(bearer, b"s3cret", {"authorization": "Basic abc"}, b"") or "")


def test_hmac_signatures_cover_the_exact_body() -> None:
    hmac_auth = Auth(type="hmac", secret="file:/run/secrets/x")
    body = b'{"id": "e1", "type": "alert", "source": "ci"}'
    good = auth.sign(b"key", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert auth.check(hmac_auth, b"key", {"x-aiops-signature": good}, body) is None
    assert "bad signature" in (auth.check(hmac_auth, b"key", {"x-aiops-signature": good}, body + b" ") or "")
    assert "bad signature" in (auth.check(hmac_auth, b"other", {"x-aiops-signature": good}, body) or "")
    assert "missing" in (auth.check(hmac_auth, b"key", {}, body) or "")
    assert "sha256=" in (auth.check(hmac_auth, b"key", {"x-aiops-signature": "md5=00"}, body) or "")


def test_secrets_must_be_references() -> None:
    with pytest.raises(ValidationError, match="must be a reference"):
        Auth(type="bearer", token="hunter2")
    with pytest.raises(ValidationError, match="needs token"):
        Auth(type="bearer")
    with pytest.raises(ValidationError, match="takes no secret"):
        Auth(type="bearer", token="env:A", secret="env:B")


def test_the_rate_limit_is_a_token_bucket_per_source() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(per_second=2, burst=3)
    assert [limiter.take("a", limit) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", limit) == 1  # retry after a second (half a second, rounded up)
    assert limiter.take("b", limit) == 0  # another source has its own bucket
    now[0] = 0.5
    assert limiter.take("a", limit) == 0
    assert limiter.take("a", limit) == 1
    slow = RateLimit(per_second=0.1, burst=1)
    assert limiter.take("c", slow) == 0
    assert limiter.take("c", slow) == 10


# ----- coalescing: which waiting batches go together (the real-server tests are in test_gateway.py) --


async def test_coalesced_updates_stay_within_the_intake_limits_and_answer_each_its_own() -> None:
    """The batching rule alone: while an update is out, waiting batches go together up to the intake's
    event limit and the byte bound, never across agent configs; a batch over a limit goes alone; a
    batch whose request gave up is not sent; each caller gets the answers to its own events."""
    sent: list[list[str]] = []
    out = asyncio.Event()

    async def send(agent_id: str, events: list[SystemEvent], config: object, rpc_timeout: float) -> list:
        sent.append([e.id for e in events])
        if len(sent) == 1:
            await out.wait()
        return [EventAnswer(event_id=e.id, outcome=EventOutcome.ACCEPTED) for e in events]

    def events(tag: str, count: int) -> list[SystemEvent]:
        return [SystemEvent(id=f"{tag}-{n}", type=EventType.ALERT, source="s") for n in range(count)]

    lane = Coalescer(send, in_flight=1)
    other = agent_config("any")
    half = COALESCE_MAX_EVENTS // 2
    calls: list[tuple[str, int, int, AgentConfig | None]] = [
        ("first", 1, 10, None),
        ("a", half, 10, None),
        ("b", half, 10, None),  # with a: exactly the event limit
        ("c", 1, 10, None),  # over it: the next update
        ("d", 1, 10, other),  # another agent config: the next update after that
        ("big", 2, COALESCE_MAX_BYTES + 1, other),  # over the byte bound: alone
        ("e", 1, 10, other),
    ]
    tasks = {
        tag: asyncio.create_task(lane.submit("x", events(tag, n), size, config, 5))
        for tag, n, size, config in calls
    }
    gone = asyncio.create_task(lane.submit("x", events("gone", 1), 10, None, 5))
    await asyncio.sleep(0)
    gone.cancel()
    for _ in range(100):  # a few turns of the loop: every caller is waiting behind the first update
        if lane.waiting("x") == len(calls) - 1:
            break
        await asyncio.sleep(0)
    out.set()
    answers = {tag: await task for tag, task in tasks.items()}
    assert [sorted({i.rsplit("-", 1)[0] for i in ids}) for ids in sent] == [
        ["first"],
        ["a", "b"],
        ["c"],
        ["d"],
        ["big"],
        ["e"],
    ]
    for tag, n, _, _ in calls:
        assert [a.event_id for a in answers[tag]] == [f"{tag}-{k}" for k in range(n)]
    assert lane.updates == 6 and lane.waiting("x") == 0


# ----- config files and versions ----------------------------------------------------------------


def write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a visible change, even at once
    return path


def config(version: int, **extra: object) -> dict:
    return {
        "version": version,
        "sources": {"am": {"auth": {"type": "bearer", "token": "env:GW_UNIT_TOKEN"}}},
        "routes": [{"name": "all", "agents": ["a"]}],
        **extra,
    }


def test_a_config_loads_with_its_secrets_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_UNIT_TOKEN", "tok")
    secret_file = tmp_path / "hmac.key"
    secret_file.write_text("k3y\n")
    agent_file = tmp_path / "a.json"
    agent_file.write_text(json.dumps({"id": "a", "name": "A", "type": "recorder"}))
    doc = config(1)
    doc["sources"]["ci"] = {"auth": {"type": "hmac", "secret": f"file:{secret_file}"}}
    doc["routes"][0]["agent_configs"] = {"a": "a.json"}  # relative to the config file
    loaded = load_config(write(tmp_path / "gw.json", doc))
    assert loaded.secrets == {"am": b"tok", "ci": b"k3y"}
    assert loaded.agent_configs["a"].type == "recorder"
    assert set(loaded.watched) == {tmp_path / "gw.json", secret_file, agent_file}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("version: [", "not valid YAML/JSON"),
        ("- 1", "must be a mapping"),
        ('{"version": 1, "sources": {}}', "sources"),
        (
            '{"version": 1, "sources": {"am": {"auth": {"type": "none"}}}, "routes": [{"name": "r"}]}',
            "agents",
        ),
        (
            '{"version": 1, "sources": {"am": {"auth": {"type": "bearer", "token": "env:GW_UNSET_X"}}}}',
            "GW_UNSET_X",
        ),
        (
            '{"version": 1, "sources": {"am": {"auth": {"type": "none"}}}, '
            '"routes": [{"name": "r", "agents": ["a"], "sources": ["nope"]}]}',
            "unknown sources: nope",
        ),
    ],
)
def test_a_bad_config_is_one_line(tmp_path: Path, document: str, problem: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(document)
    with pytest.raises(ConfigProblem) as err:
        load_config(path)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_reload_takes_a_higher_version_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GW_UNIT_TOKEN", "tok")
    path = write(tmp_path / "gw.json", config(1))
    seen: list[tuple[int | None, str]] = []
    holder = ConfigHolder(path, lambda loaded, result: seen.append((loaded and loaded.version, result)))
    assert not holder.changed()

    write(path, config(1, routes=[{"name": "other", "agents": ["b"]}]))  # changed, same version
    assert holder.changed() and not holder.reload()
    assert "version 1 is not above the version in force (1)" in (holder.last_refusal or "")
    assert not holder.changed()  # a refused file is not retried until it changes again

    write(path, {"version": 2, "sources": {}})  # invalid
    assert not holder.reload() and holder.current.version == 1
    assert any("refused, version 1 stays in force" in r.getMessage() for r in caplog.records)

    write(path, config(2, routes=[{"name": "other", "agents": ["b"]}]))
    assert holder.changed() and holder.reload()
    assert holder.current.version == 2 and holder.current.config.routes[0].agents == ["b"]
    assert holder.last_refusal is None
    assert seen == [(1, "applied"), (None, "refused"), (None, "refused"), (2, "applied")]
