"""A decision's input is built from the JSON each event was measured as on intake: the same bytes
the SDK's pydantic converter makes of the ``DecideEventsInput``, so the activity reads the same
request and a recorded activity's input is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic_core import to_json

from aiops.contracts.activities import DecideEventsInput, DecisionAudit
from aiops.contracts.agent import AgentRunState, AgentState
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import EventType
from workflows.agent.decisions import decide_input
from workflows.agent.event_intake import EventIntake

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def intake_of(*payloads: dict[str, Any]) -> tuple[AgentRunState, EventIntake]:
    config = AgentConfig(id="a1", name="a", type="example", settings={"k": "café"})
    s = AgentRunState(config=config, state=AgentState.RUNNING, subscribed_event_types=[EventType.ALERT])
    intake = EventIntake(s)
    for payload in payloads:
        intake.take(payload, NOW)
    return s, intake


EVENTS = [
    {"id": "e1", "type": "alert", "source": "s", "data": {"n": 1}},
    {"id": "e2", "type": "alert", "source": "s", "severity": "critical", "data": {"t": "→ ✓ \U0001f600"}},
    {"id": "e3", "type": "deployment", "source": "s", "correlation_id": "c", "timestamp": "2026-01-01T00:01"},
]


@pytest.mark.parametrize("audit", [False, True])
@pytest.mark.parametrize("compact", [False, True])
def test_the_input_is_the_bytes_the_converter_makes(audit: bool, compact: bool) -> None:
    s, intake = intake_of(*EVENTS)
    batch, filtered = intake.next_batch()
    assert [e.id for e in batch] == ["e2", "e1"] and [e.id for e in filtered] == ["e3"]  # graver first
    trail = DecisionAudit(run_id="r", attempts={"e1": 1}, filtered=filtered) if audit else None
    request = DecideEventsInput(config=s.config, events=batch, audit=trail, compact=compact)
    payload = decide_input(request, intake.json_of(batch)).payload
    assert payload.metadata["encoding"] == b"json/plain"
    assert payload.data == to_json(request)
    assert DecideEventsInput.model_validate_json(payload.data) == request


def test_an_event_no_longer_queued_is_serialized_anew() -> None:
    """Settled events leave the kept JSON with the queue; asked for anyway, they are serialized."""
    _, intake = intake_of(*EVENTS[:2])
    batch, filtered = intake.next_batch()
    kept = intake.json_of(batch)
    intake.settle(batch, filtered, [])
    assert intake.json_of(batch) == kept == [to_json(e) for e in batch]
    assert intake._json == {}  # nothing kept for events that left the queue


def test_a_carried_queue_is_measured_again() -> None:
    s, intake = intake_of(*EVENTS)
    again = EventIntake(s)  # the next run, with the carried queue
    assert again.json_of(s.queue) == intake.json_of(s.queue)
    assert again.queue_bytes == intake.queue_bytes
