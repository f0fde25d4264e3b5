"""Spilled and handed-back events travel in batches under Temporal's payload limit."""

from __future__ import annotations

from aiops.contracts.budgets import json_size
from aiops.contracts.overflow import OVERFLOW_BATCH_BYTES, first_batch, overflow_workflow_id


def _events(n: int, size: int) -> list[dict[str, object]]:
    return [{"id": f"e{i}", "data": {"p": "x" * size}} for i in range(n)]


def test_batches_are_bounded_by_count_and_bytes() -> None:
    cases = [
        (_events(0, 10), 500, 0),
        (_events(3, 10), 500, 3),
        (_events(800, 10), 500, 500),
        (_events(500, 31_000), 500, 16),  # 500 events of 31 KB would be 15 MB
        (_events(2, 2_000_000), 500, 1),  # one event alone always goes (it was admitted once)
        (_events(10, 10), 4, 4),
    ]
    for events, most, expected in cases:
        n = first_batch(events, most)
        assert n == expected, (len(events), most)
        if n > 1:
            assert json_size(events[:n]) <= OVERFLOW_BATCH_BYTES + 100


def test_the_overflow_id_names_no_agent() -> None:
    assert overflow_workflow_id("web") == "agent-web:overflow" != overflow_workflow_id("web:overflow")
