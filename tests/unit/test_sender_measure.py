"""The sender's size check (``checked_size``) reads most events from their JSON alone, and still
refuses every event the agent's intake would measure over the limit, before anything is sent.

The agent's side is simulated the way it happens: the request goes through the project's data
converter both ways, and the intake parses and measures each event (``parse_event``,
``event_size``) with the longest time a workflow can give an event that has none.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from aiops.client.errors import EventTooLargeError
from aiops.client.events import INTAKE_GROWTH, checked_size
from aiops.codec.converter import DATA_CONVERTER
from aiops.contracts.agent import IntakeRequest
from aiops.contracts.limits import MAX_EVENT_BYTES
from workflows.agent.event_intake import EventRejected, event_size, parse_event

# The longest time a workflow gives an event without one: microseconds, UTC.
WORKFLOW_NOW = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
EMPTY_REQUEST = len(to_json(IntakeRequest(events=[], compact=True)))


def as_sent(payload: Any) -> tuple[int, Any]:
    """The bytes ``payload`` takes in an intake request, and what the agent reads of it."""
    converter = DATA_CONVERTER.payload_converter
    [wire] = converter.to_payloads([IntakeRequest(events=[payload], compact=True)])
    [request] = converter.from_payloads([wire], [IntakeRequest])
    return len(wire.data) - EMPTY_REQUEST, request.events[0]


def agent_measure(received: Any) -> int | None:
    """The intake's size of the event it read, or None when it refuses it as no event."""
    try:
        return event_size(parse_event(received, WORKFLOW_NOW))
    except EventRejected:
        return None


class Colour(Enum):
    RED = "red"


NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")))
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec="utf-8"), max_size=20)  # controls, quotes, backslashes, emoji
    | st.datetimes(timezones=st.just(UTC))  # Python values the converter writes as JSON
    | st.just(Colour.RED)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
TIMESTAMPS = st.sampled_from(
    [
        0,
        1,
        1.5,
        "0",
        "2020-01-01",
        "2020-01-01T00:00Z",
        "9999-12-31T23:59:59.999999+23:59",
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        "not a time",
    ]
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Events (and near-events: a missing id, a bad type) padded to near the limit, with every
    optional field present or not."""
    payload: dict[str, Any] = {"type": draw(st.sampled_from(["alert", "deployment", "no such type"]))}
    if draw(st.booleans()):
        payload["id"] = draw(NAMES.filter(bool).map(lambda s: s[:100]))
    payload["source"] = draw(NAMES.filter(bool))
    if draw(st.booleans()):
        payload["severity"] = draw(st.sampled_from(["info", "critical"]))
    if draw(st.booleans()):
        payload["timestamp"] = draw(TIMESTAMPS)
    if draw(st.booleans()):
        payload["correlation_id"] = draw(st.none() | NAMES.filter(bool))
    data = draw(st.dictionaries(st.text(max_size=5), VALUES, max_size=4))
    target = draw(st.integers(MAX_EVENT_BYTES - 2 * INTAKE_GROWTH, MAX_EVENT_BYTES + 20))
    if draw(st.booleans()):
        data["pad"] = ""
        payload["data"] = data
        try:
            grow = target - len(to_json(payload, inf_nan_mode="null"))
        except ValueError:
            grow = 0
        data["pad"] = draw(st.sampled_from(["a", "é", "\n", "\U0001f600"])) * max(0, grow)
    elif data:
        payload["data"] = data
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_every_event_the_agent_would_measure_over_the_limit_is_refused_before_sending(payload: Any) -> None:
    try:
        sent, received = as_sent(payload)
    except ValueError:  # not JSON at all: the converter refuses to send it, whatever the check says
        return
    measured = agent_measure(received)
    try:
        size = checked_size(payload)
    except EventTooLargeError as err:
        assert "over the" in str(err) or "nested too deeply" in str(err)
        assert measured is None or measured > MAX_EVENT_BYTES - INTAKE_GROWTH
        return
    assert measured is None or measured <= MAX_EVENT_BYTES, (measured, sent)
    assert size >= sent, "an update's budget counts each event at least at the bytes it is sent as"


@pytest.mark.parametrize("over", [0, 1])
def test_the_most_an_event_grows_on_intake_is_caught(over: int) -> None:
    """An event with every optional field left out grows the most on intake (its defaults and
    the workflow's time are added): sent just under the limit, it is measured just over it."""
    base = {"id": "e", "type": "alert", "source": ""}
    grown = agent_measure(as_sent({**base, "source": "s"})[1])
    assert grown is not None
    growth = grown - len(to_json({**base, "source": "s"}))
    assert 0 < growth <= INTAKE_GROWTH
    payload = {**base, "source": "s" * (MAX_EVENT_BYTES - grown + 1 + over)}
    measured = agent_measure(as_sent(payload)[1])
    assert measured == MAX_EVENT_BYTES + over
    if over:
        with pytest.raises(EventTooLargeError, match=rf"event 'e' is {MAX_EVENT_BYTES + 1} bytes, over the"):
            checked_size(payload)
    else:
        assert checked_size(payload) == MAX_EVENT_BYTES


def test_not_a_number_is_sent_as_null_and_measured_so() -> None:
    payload = {"id": "e", "type": "alert", "source": "s", "data": {"x": [math.nan, math.inf]}}
    sent, received = as_sent(payload)
    assert received["data"] == {"x": [None, None]}
    assert checked_size(payload) == sent


def test_what_is_no_json_is_measured_the_long_way() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(EventTooLargeError, match="nested too deeply"):
        checked_size({"id": "loop", "type": "alert", "source": "s", "data": {"x": circular}})
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(EventTooLargeError, match="'deep' is nested too deeply"):
        checked_size({"id": "deep", "type": "alert", "source": "s", "data": {"x": deep}})
