"""The pure parts of the Redis source: an entry checked, refused with a reason, kept cut in a dead
letter; the settings' bounds. No server needed (the real-server tests are test_redis_source.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from aiops.gateway.intake import EventRefused, parse_event
from aiops.sources.redis_entries import DEAD_VALUE_BYTES, Entry, dead_letter_fields, read_entry
from aiops.sources.redis_settings import RedisPublishSettings, RedisSourceSettings

SETTINGS = RedisSourceSettings(streams=["in"], consumer="c1", max_fields=3, max_entry_bytes=1000)
GOOD = {
    "id": "e-1",
    "type": "alert",
    "source": "db-1",
    "severity": "high",
    "data": {"labels": {"team": "ops"}},
}


def make(**fields: bytes) -> Entry:
    return Entry("in", "1-0", {k.encode(): v for k, v in fields.items()})


def test_a_valid_entry_is_its_event_with_its_size() -> None:
    event, size = read_entry(make(event=json.dumps(GOOD).encode(), producer=b"svc"), SETTINGS)
    assert event.id == "e-1" and event.data["labels"] == {"team": "ops"}
    assert size == len(event.model_dump_json().encode())


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event": b"x" * 2000}, "the entry is 2005 bytes, over the limit of 1000"),
        ({"a": b"1", "b": b"2", "c": b"3", "event": b"{}"}, "4 fields, over the limit of 3"),
        ({"payload": b"{}"}, "missing field 'event'"),
        ({"event": b"{nope"}, "the event is not JSON: Expecting property name"),
        ({"event": b"\xff\xfe"}, "not UTF-8 text"),
        ({"event": b"[" * 400 + b"]" * 400}, "an event must be a JSON object, got list"),
        ({"event": b'"text"'}, "an event must be a JSON object, got str"),
        ({"event": json.dumps({"type": "alert", "source": "s"}).encode()}, "id: field required"),
        ({"event": json.dumps({**GOOD, "severity": "dire"}).encode()}, "invalid event: severity"),
    ],
)
def test_a_hostile_entry_is_refused_with_a_reason_that_says_what(
    fields: dict[str, bytes], reason: str
) -> None:
    with pytest.raises(EventRefused) as refused:
        read_entry(make(**fields), SETTINGS)
    assert reason in str(refused.value)


def test_json_nested_past_the_parsers_depth_is_refused_not_a_crash() -> None:
    roomy = SETTINGS.model_copy(update={"max_entry_bytes": 1024 * 1024})
    with pytest.raises(EventRefused, match="nested too deeply"):
        read_entry(make(event=b"[" * 200_000 + b"]" * 200_000), roomy)


def test_an_event_over_the_agents_limit_is_refused_as_the_gateway_refuses_it() -> None:
    big = {**GOOD, "data": {"blob": "x" * 40_000}}
    roomy = SETTINGS.model_copy(update={"max_entry_bytes": 100_000})
    with pytest.raises(EventRefused, match="over the agents' 32000-byte limit"):
        read_entry(make(event=json.dumps(big).encode()), roomy)
    with pytest.raises(EventRefused, match="over the agents' 32000-byte limit"):
        parse_event(big, "the event")  # the same check /v1/events runs


def test_a_dead_letter_keeps_where_and_why_and_the_fields_cut_to_a_bound() -> None:
    entry = Entry("in", "7-1", {b"event": b"y" * 5000, b"note": b"n"})
    kept = dead_letter_fields(entry, "the entry is too big", SETTINGS)
    assert (
        kept[b"stream"] == b"in"
        and kept[b"entry_id"] == b"7-1"
        and kept[b"reason"] == b"the entry is too big"
    )
    assert kept[b"field:event"] == b"y" * DEAD_VALUE_BYTES and kept[b"field:note"] == b"n"
    assert kept[b"truncated"] == b"1"
    many = Entry("in", "8-0", {f"f{i}".encode(): b"v" for i in range(50)})
    assert (
        sum(k.startswith(b"field:") for k in dead_letter_fields(many, "wide", SETTINGS))
        == SETTINGS.max_fields
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"streams": []},
        {"streams": ["has space"]},
        {"streams": [f"s{i}" for i in range(17)]},
        {"batch": 0},
        {"batch": 5000},
        {"max_entry_bytes": 10 * 1024 * 1024},
        {"claim_idle_seconds": 0},
        {"group": ""},
        {"unknown": 1},
    ],
)
def test_source_settings_out_of_bounds_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        RedisSourceSettings.model_validate({"streams": ["in"], **overrides})


def test_publish_settings_are_bounded_and_name_their_positions_hash() -> None:
    assert RedisPublishSettings(stream="ops:audit").positions_key == "ops:audit:positions"
    with pytest.raises(ValidationError):
        RedisPublishSettings(batch=0)
    with pytest.raises(ValidationError):
        RedisPublishSettings(stream="bad name")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["source", "redis", "--routes", "/nonexistent/gw.yaml", "--stream", "in"], "cannot read it"),
        (["source", "redis", "--routes", "gw.yaml", "--stream", "in", "--batch", "0"], "batch"),
        (["source", "redis", "--routes", "gw.yaml", "--stream", "bad name"], "not valid stream names"),
        (
            ["source", "redis", "--routes", "gw.yaml", "--stream", "in", "--url", "env:AIOPS_R1_UNSET"],
            "not set",
        ),
        (["publish", "redis", "--batch", "0"], "batch"),
        (["publish", "redis", "--once"], "DATABASE_URL is not set"),
    ],
)
def test_the_commands_refuse_bad_options_with_exit_2_before_connecting(
    args: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from aiops.cli import app

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("AIOPS_R1_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gw.yaml").write_text("version: 1\nsources: {redis: {auth: {type: none}}}\n")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert said in result.output
