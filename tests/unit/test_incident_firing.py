"""An incident of any size decides once on what is still firing, in bounded memory."""

from __future__ import annotations

from datetime import timedelta

from aiops.contracts.budgets import json_size
from tests.unit.test_incidents import T0, alert
from workflows.agent.incidents import MAX_ALERTS_KEPT, MAX_FIRING_TRACKED, IncidentBook

WINDOW = 30
CLOSE = T0 + timedelta(seconds=WINDOW)


def _storm(total: int, resolved: list[int], resend: bool = False) -> tuple[IncidentBook, list[int]]:
    """``total`` alerts fire in one group, the ``resolved`` ones resolve before the window
    closes (with every firing alert sent again first, with ``resend``); the decisions made."""
    book = IncidentBook({}, 0)
    for n in range(total):
        book.add("g", alert(n, "g"), T0, WINDOW)
    if resend:
        for n in range(total):
            book.add("g", alert(n, "g"), T0 + timedelta(seconds=1), WINDOW)
    for n in resolved:
        book.add("g", alert(n, "g", "resolved"), T0 + timedelta(seconds=2), WINDOW)
    decided = [e.data["incident"]["firing"] for e in book.due(CLOSE)]
    decided += [e.data["incident"]["firing"] for e in book.due(CLOSE + timedelta(minutes=5))]  # once
    return book, decided


def test_firing_alerts_decide_once_whatever_the_incident_size() -> None:
    cases = [
        # (alerts, which resolve, resend everything first) -> firing counts decided on
        (500, list(range(50)), False, [450]),  # the 50 kept in the sample resolve
        (500, list(range(450, 500)), False, [450]),  # 50 beyond the sample resolve
        (60, list(range(50)), False, [10]),
        (60, list(range(50)), True, [10]),  # resends of firing alerts are not counted twice
        (60, list(range(60)), False, []),  # all resolved: the incident closes, no decision
        (500, list(range(500)), True, []),
        (40, [], False, [40]),
    ]
    for total, resolved, resend, expected in cases:
        book, decided = _storm(total, resolved, resend)
        assert decided == expected, (total, len(resolved), resend)
        if not expected:
            assert book.incidents == {}


def test_beyond_the_tracked_digests_the_count_is_approximate_but_never_too_low() -> None:
    total = MAX_ALERTS_KEPT + MAX_FIRING_TRACKED + 200
    _, decided = _storm(total, list(range(total - 100, total)))  # 100 untracked resolve
    assert decided == [total - 100]
    # a resend of an untracked firing alert counts it again: too high, so the incident decides
    book2, _ = _storm(total, [])
    book2.add("g", alert(total - 1, "g"), T0, WINDOW)
    assert book2.incidents["g"].firing == total + 1
    # resolving every alert still closes it
    book3, decided3 = _storm(total, list(range(total)))
    assert decided3 == [] and book3.incidents == {}


def test_memory_stays_bounded_for_a_huge_incident() -> None:
    book, _ = _storm(20_000, [])
    incident = book.incidents["g"]
    assert len(incident.alerts) == MAX_ALERTS_KEPT
    assert len(incident.firing_tracked) == MAX_FIRING_TRACKED
    assert incident.firing == 20_000
    assert json_size(incident) < 40_000
    assert book.summaries()[0].firing == 20_000
