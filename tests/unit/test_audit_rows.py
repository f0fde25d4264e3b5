"""Audit rows built outside the workflow must match the workflow's own: same keys, same bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aiops.contracts.activities import MAX_DECIDE_ATTEMPTS, EventDecision, attempts_after
from aiops.contracts.audit_rows import MAX_TEXT, bounded, event_record
from aiops.contracts.models import SystemEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_cut_text_fits_and_is_not_cut_again() -> None:
    cut = bounded("x" * 9000)
    assert len(cut) <= MAX_TEXT and cut.endswith("... (9000 chars)")
    assert bounded(cut) == cut
    assert bounded({"a": ["y" * 5000]})["a"][0].endswith("(5000 chars)")


@pytest.mark.parametrize(
    ("previous", "decision", "after"),
    [
        (0, EventDecision(event_id="e"), 0),
        (0, EventDecision(event_id="e", error="boom"), 1),
        (MAX_DECIDE_ATTEMPTS - 2, EventDecision(event_id="e", error="boom"), MAX_DECIDE_ATTEMPTS - 1),
        (MAX_DECIDE_ATTEMPTS - 1, EventDecision(event_id="e", error="boom"), 0),  # given up on
        (0, EventDecision(event_id="e", error="bad", retryable=False), 0),
        (2, EventDecision(event_id="e"), 0),  # decided at last
    ],
)
def test_attempts_after_a_decision(previous: int, decision: EventDecision, after: int) -> None:
    assert attempts_after(previous, decision) == after


def test_one_row_per_attempt_and_outcome() -> None:
    event = SystemEvent(id="e1", type="alert", source="h", timestamp=NOW)
    ok = event_record("a", "run", event, EventDecision(event_id="e1"), 0, 3, NOW)
    failed = event_record("a", "run", event, EventDecision(event_id="e1", error="x"), 1, 3, NOW)
    assert ok.key == "a/run:event:e1:0:1" and failed.key == "a/run:event:e1:1:0"
    assert ok.detail["config_version"] == 3 and ok.detail["proposed_action"] is None
    filtered = event_record("a", "run", event, EventDecision(event_id="e1"), 0, 3, NOW, filtered=True)
    assert "does not subscribe" in filtered.detail["filtered"] and filtered.key == ok.key
