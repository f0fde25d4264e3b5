"""Event intake as a pure class: admission, the dedup window, bounds, batching, retries, bisection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aiops.contracts.activities import MAX_DECIDE_ATTEMPTS, EventDecision
from aiops.contracts.agent import AgentRunState, AgentState
from aiops.contracts.config import AgentConfig, RuntimeSettings
from aiops.contracts.models import AgentAction, EventType, SystemEvent
from workflows.agent.event_intake import (
    MAX_EVENT_BYTES,
    Admission,
    EventIntake,
    EventRejected,
    event_size,
    events_of,
    parse_all,
    parse_event,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def state(**runtime: Any) -> AgentRunState:
    config = AgentConfig(id="a1", name="a", type="example", runtime=RuntimeSettings(**runtime))
    s = AgentRunState(config=config, state=AgentState.RUNNING)
    s.subscribed_event_types = [EventType.ALERT]
    return s


def ev(event_id: str, event_type: str = "alert", **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "source": "test", **extra}


def action(event_id: str) -> AgentAction:
    return AgentAction(id="", agent_id="a1", type="restart_service", description=f"fix {event_id}")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "must be a JSON object, got NoneType"),
        ("text", "must be a JSON object, got str"),
        ([1, 2], "must be a JSON object, got list"),
        ({"type": "alert", "source": "x"}, "id: field required"),
        ({"id": "e", "type": "nope", "source": "x"}, "type:"),
        ({"id": "e", "type": "alert", "source": "x", "severty": "low"}, "severty"),
        ({"id": "", "type": "alert", "source": "x"}, "id:"),
    ],
)
def test_a_malformed_payload_is_rejected_with_its_reason(payload: Any, reason: str) -> None:
    with pytest.raises(EventRejected, match=reason):
        parse_event(payload, NOW)


def test_a_missing_timestamp_becomes_the_workflow_now() -> None:
    assert parse_event(ev("e1"), NOW).timestamp == NOW


@pytest.mark.parametrize(
    ("payload", "count"), [([ev("a"), ev("b")], 2), ({"events": [ev("a")]}, 1), ({"events": []}, 0)]
)
def test_a_batch_payload_is_a_list_or_an_events_object(payload: Any, count: int) -> None:
    assert len(events_of(payload)) == count


@pytest.mark.parametrize("payload", [42, "x", {"events": "x"}, {"items": []}, None])
def test_a_batch_payload_of_another_shape_is_rejected(payload: Any) -> None:
    with pytest.raises(EventRejected, match="submit_events needs a JSON list"):
        events_of(payload)


def test_admission_counts_accepts_and_deduplicates() -> None:
    s = state()
    intake = EventIntake(s)
    assert intake.take(ev("e1"), NOW).admission == Admission.ACCEPTED
    assert intake.take(ev("e1"), NOW).admission == Admission.DUPLICATE
    assert intake.take(ev("e2"), NOW).admission == Admission.ACCEPTED
    assert [e.id for e in s.queue] == ["e1", "e2"]
    assert (s.counters.events_received, s.counters.events_deduplicated) == (3, 1)
    assert s.last_event_at == NOW
    assert intake.queue_bytes == sum(len(e.model_dump_json()) for e in s.queue)


def test_the_dedup_window_forgets_the_oldest_ids_first() -> None:
    s = state(dedup_window=2)
    intake = EventIntake(s)
    for event_id in ("e1", "e2", "e3"):
        intake.take(ev(event_id), NOW)
    assert s.seen_event_ids == ["e2", "e3"]
    assert intake.take(ev("e1"), NOW).admission == Admission.ACCEPTED  # forgotten, so new again
    assert intake.take(ev("e3"), NOW).admission == Admission.DUPLICATE


def test_the_window_is_rebuilt_from_carried_state() -> None:
    s = state()
    EventIntake(s).take(ev("e1"), NOW)
    again = EventIntake(s)  # the next run, after continue-as-new
    assert again.take(ev("e1"), NOW).admission == Admission.DUPLICATE
    assert again.queue_bytes > 0


def test_an_oversized_event_is_rejected_and_the_queue_is_untouched() -> None:
    s = state()
    with pytest.raises(EventRejected, match=f"over the {MAX_EVENT_BYTES}-byte limit"):
        EventIntake(s).take(ev("big", data={"blob": "x" * MAX_EVENT_BYTES}), NOW)
    assert s.queue == [] and s.counters.events_received == 0


def test_a_full_queue_rejects_by_count_and_says_to_resend() -> None:
    s = state(max_queue=2)
    intake = EventIntake(s)
    intake.take(ev("e1"), NOW)
    intake.take(ev("e2"), NOW)
    with pytest.raises(EventRejected, match=r"the queue is full .* resend it later"):
        intake.take(ev("e3"), NOW)
    assert [e.id for e in s.queue] == ["e1", "e2"]


def test_a_full_queue_rejects_by_bytes() -> None:
    s = state()
    intake = EventIntake(s)
    intake.queue_bytes = 999_990  # as if a megabyte waited already
    with pytest.raises(EventRejected, match="the queue is full"):
        intake.take(ev("e1"), NOW)


def test_a_batch_splits_subscribed_from_filtered_and_respects_the_limit() -> None:
    s = state(batch_size=3)
    intake = EventIntake(s)
    for i, kind in enumerate(["alert", "deployment", "alert", "alert"]):
        intake.take(ev(f"e{i}", kind), NOW)
    batch, filtered = intake.next_batch()
    assert [e.id for e in batch] == ["e0", "e2"] and [e.id for e in filtered] == ["e1"]
    intake.batch_limit = 1
    assert [e.id for e in intake.next_batch()[0]] == ["e0"]


def test_settling_a_batch_counts_and_proposes_and_requeues_transient_errors() -> None:
    s = state()
    intake = EventIntake(s)
    for i, kind in enumerate(["alert", "alert", "alert", "deployment", "alert"]):
        intake.take(ev(f"e{i}", kind), NOW)
    batch, filtered = intake.next_batch()
    decisions = [
        EventDecision(event_id="e0", action=action("e0")),
        EventDecision(event_id="e1"),
        EventDecision(event_id="e2", error="flaky", retryable=True),
        EventDecision(event_id="e4", error="bad data", retryable=False),
        EventDecision(event_id="unknown", action=action("x")),  # not in the batch: ignored
    ]
    out = intake.settle(batch, filtered, decisions)
    assert [e.id for e in out.filtered] == ["e3"]
    assert [e.id for e, _ in out.proposals] == ["e0"]
    assert [e.id for e, _ in out.audited] == ["e0", "e1", "e2", "e4"]
    assert out.processed == 3 and out.retry_after_seconds == 2
    assert out.notes == [("flaky (attempt 1; will retry)", "e2"), ("bad data", "e4")]
    assert [e.id for e in s.queue] == ["e2"]
    assert (s.counters.events_processed, s.counters.decision_errors, s.counters.events_filtered) == (3, 1, 1)
    assert s.decide_attempts == {"e2": 1}
    assert intake.queue_bytes == len(s.queue[0].model_dump_json())


@pytest.mark.parametrize("rows", [True, False])
def test_a_compact_answer_settles_as_the_full_one(rows: bool) -> None:
    """A compact answer names only the events with an action or an error; the rest were decided
    quietly. Settled with ``quiet_rest`` it comes to what the full answer comes to, and without
    ``rows`` (the decision wrote the audit rows) no decision is built for the quiet events."""
    outcomes = []
    for compact in (False, True):
        s = state()
        intake = EventIntake(s)
        for i in range(5):
            intake.take(ev(f"e{i}"), NOW)
        s.decide_attempts["e1"] = 1  # a quiet event decided on its second attempt
        batch, filtered = intake.next_batch()
        said = [
            EventDecision(event_id="e0", action=action("e0")),
            EventDecision(event_id="e2", error="flaky", retryable=True),
            EventDecision(event_id="e4", error="bad data", retryable=False),
        ]
        quiet = [EventDecision(event_id=e) for e in ("e1", "e3")]
        decisions = said if compact else sorted([*said, *quiet], key=lambda d: d.event_id)
        out = intake.settle(batch, filtered, decisions, quiet_rest=compact, rows=rows or not compact)
        outcomes.append(
            (
                [e.id for e, _ in out.proposals],
                out.processed,
                out.notes,
                out.retry_after_seconds,
                [e.id for e in s.queue],
                s.counters.model_dump(),
                s.decide_attempts,
            )
        )
        audited = [(e.id, d.event_id, d.error) for e, d in out.audited]
        if compact and not rows:
            assert audited == [("e0", "e0", None), ("e2", "e2", "flaky"), ("e4", "e4", "bad data")]
        else:
            assert audited == [(f"e{i}", f"e{i}", {2: "flaky", 4: "bad data"}.get(i)) for i in range(5)]
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][1] == 4 and outcomes[1][6] == {"e2": 1}


def test_a_transient_error_is_given_up_after_the_last_attempt() -> None:
    s = state()
    intake = EventIntake(s)
    intake.take(ev("e1"), NOW)
    for attempt in range(1, MAX_DECIDE_ATTEMPTS + 1):
        batch, filtered = intake.next_batch()
        out = intake.settle(batch, filtered, [EventDecision(event_id="e1", error="flaky")])
        if attempt < MAX_DECIDE_ATTEMPTS:
            assert out.retry_after_seconds == 2**attempt and s.queue
    assert s.queue == [] and s.counters.decision_errors == 1 and s.decide_attempts == {}


def test_a_failing_batch_is_halved_until_the_poison_event_stands_alone_and_is_dropped() -> None:
    s = state(batch_size=8)
    intake = EventIntake(s)
    for i in range(8):
        intake.take(ev(f"e{i}"), NOW)
    sizes, backoffs = [], []
    while True:
        batch, _ = intake.next_batch()
        sizes.append(len(batch))
        failure = intake.batch_failed(batch, "crash")
        if failure.gave_up is not None:
            break
        backoffs.append(failure.retry_after_seconds)
    assert sizes == [8, 4, 2, 1, 1, 1]
    assert backoffs == [2, 4, 8, 16, 32]
    assert failure.gave_up.id == "e0" and "gave up on event after 3 failed decisions" in failure.gave_up_note
    assert [e.id for e in s.queue] == [f"e{i}" for i in range(1, 8)]
    assert s.counters.decision_errors == 1 and s.counters.events_processed == 1
    out = intake.settle(*intake.next_batch(), [])  # the next good batch restores the full size
    assert intake.batch_limit == 8 and out.processed == 0


def test_the_backoff_of_failed_steps_is_capped() -> None:
    s = state(batch_size=2)
    intake = EventIntake(s)
    intake.take(ev("a"), NOW)
    intake.take(ev("b"), NOW)
    waits = [intake.batch_failed(s.queue[:2], "down").retry_after_seconds for _ in range(10)]
    assert max(waits) == 60


def test_a_config_switch_resets_the_batch_limit() -> None:
    s = state(batch_size=10)
    intake = EventIntake(s)
    intake.batch_limit = 1
    s.config = s.config.model_copy(update={"runtime": RuntimeSettings(batch_size=5)})
    intake.config_switched()
    assert intake.batch_limit == 5


def test_an_event_model_is_taken_as_is() -> None:
    event = SystemEvent(id="m1", type="alert", source="s", timestamp=NOW)
    assert parse_event(event, NOW) is event


@pytest.mark.parametrize(
    "data",
    [{}, {"n": [1, 2.5, None, True]}, {"text": "café → ✓ \U0001f600"}, {"odd": '\u2028\x00"\\'}],
)
def test_an_event_is_measured_as_its_json(data: dict[str, Any]) -> None:
    """Every bound counts an event as the characters of its JSON, non-ASCII ones included."""
    event = parse_event(ev("e1", data=data), NOW)
    assert event_size(event) == len(event.model_dump_json())


def test_a_batch_of_events_is_read_in_one_go_as_each_alone() -> None:
    batch = [ev("e1"), ev("e2", severity="critical", timestamp="2026-01-02T00:00"), ev("e3", data={"x": 1})]
    assert parse_all(batch, NOW) == [parse_event(p, NOW) for p in batch]
    assert parse_all([], NOW) == []


@pytest.mark.parametrize(
    "odd", [None, "text", {"type": "alert", "source": "x"}, ev("e9", "nope"), ev("e\u202e9"), ev("")]
)
def test_a_batch_with_anything_but_events_is_read_one_by_one(odd: Any) -> None:
    """``None``: each payload is then read alone, so each refusal says what is wrong with it."""
    assert parse_all([ev("e1"), odd, ev("e2")], NOW) is None
