"""Incident grouping as a pure book: keys, windows, one decision per incident, resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiops.contracts.agent import AgentRunState
from aiops.contracts.config import RuntimeSettings
from aiops.contracts.models import SystemEvent
from workflows.agent.event_intake import RANK, Admission, EventIntake
from workflows.agent.incidents import MAX_ALERTS_KEPT, IncidentBook, correlation_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def alert(n: int, group: str, status: str = "firing", **labels: Any) -> SystemEvent:
    data = {"status": status, "fingerprint": f"fp{n}", "labels": labels, "annotations": {"summary": f"#{n}"}}
    return SystemEvent(
        id=f"am:fp{n}:{status}:1", type="alert", source=f"host{n}", severity="high" if n % 2 else "low",
        correlation_id=group, timestamp=T0, data=data,
    )  # fmt: skip


def test_only_a_configured_window_groups_and_the_key_is_the_correlation_or_the_labels() -> None:
    e = alert(1, "g1", alertname="DiskFull", cluster="eu")
    assert correlation_of(e, RuntimeSettings()) is None
    assert correlation_of(e, RuntimeSettings(incident_window_seconds=30)) == "g1"
    by_labels = RuntimeSettings(incident_window_seconds=30, incident_group_by=["alertname", "cluster"])
    assert correlation_of(e, by_labels) == "alertname=DiskFull|cluster=eu"


def test_alerts_of_one_group_become_one_incident_event_after_the_window() -> None:
    book = IncidentBook({}, 0)
    for n in range(5):
        assert book.add("g1", alert(n, "g1"), T0 + timedelta(seconds=n), 30)
    book.add("g2", alert(9, "g2"), T0, 30)
    assert book.due(T0 + timedelta(seconds=29)) == []
    assert book.next_deadline() == T0 + timedelta(seconds=30)
    due = book.due(T0 + timedelta(seconds=30))
    assert [e.id for e in due] == ["incident:" + due[0].id.split(":")[1] + ":1", due[1].id]
    first = due[0]
    assert first.correlation_id == "g1" and first.severity == "high"
    assert [a["fingerprint"] for a in first.data["alerts"]] == [f"fp{n}" for n in range(5)]
    assert book.due(T0 + timedelta(hours=1)) == [], "an incident is decided once"
    book.add("g1", alert(7, "g1"), T0 + timedelta(minutes=5), 30)  # joins the decided incident
    assert book.due(T0 + timedelta(hours=1)) == [] and book.incidents["g1"].alerts_total == 6


def test_resolving_every_alert_closes_the_incident_and_the_next_one_gets_a_new_id() -> None:
    book = IncidentBook({}, 0)
    book.add("g1", alert(1, "g1"), T0, 10)
    book.add("g1", alert(2, "g1"), T0, 10)
    first = book.due(T0 + timedelta(seconds=10))[0]
    book.add("g1", alert(1, "g1", "resolved"), T0, 10)
    assert list(book.incidents) == ["g1"]
    book.add("g1", alert(2, "g1", "resolved"), T0, 10)
    assert book.incidents == {}
    book.add("g1", alert(3, "g1"), T0 + timedelta(hours=1), 10)
    again = book.due(T0 + timedelta(hours=2))[0]
    assert again.id != first.id and again.id.endswith(":2")


def test_an_incident_resolved_before_its_window_passes_is_never_decided() -> None:
    book = IncidentBook({}, 0)
    book.add("g1", alert(1, "g1"), T0, 10)
    book.add("g1", alert(1, "g1", "resolved"), T0 + timedelta(seconds=1), 10)
    assert book.due(T0 + timedelta(seconds=20)) == [] and book.incidents == {}


def test_an_incident_keeps_a_bounded_number_of_alerts_and_counts_the_rest() -> None:
    book = IncidentBook({}, 0)
    for n in range(MAX_ALERTS_KEPT + 30):
        book.add("g1", alert(n, "g1"), T0, 10)
    incident = book.incidents["g1"]
    assert len(incident.alerts) == MAX_ALERTS_KEPT and incident.alerts_total == MAX_ALERTS_KEPT + 30
    assert len(book.due(T0 + timedelta(seconds=10))[0].model_dump_json()) < 32_000


def test_intake_groups_after_deduplication_and_releases_incidents_to_the_queue() -> None:
    config = {"id": "a", "name": "a", "type": "x", "runtime": {"incident_window_seconds": 5}}
    state = AgentRunState.model_validate({"config": config})
    intake = EventIntake(state)
    assert intake.take(alert(1, "g1").model_dump(mode="json"), T0).admission == Admission.GROUPED
    assert intake.take(alert(1, "g1").model_dump(mode="json"), T0).admission == Admission.DUPLICATE
    loose = alert(2, "g2").model_copy(update={"correlation_id": None})
    assert intake.take(loose.model_dump(mode="json"), T0).admission == Admission.ACCEPTED
    assert [e.id for e in state.queue] == [loose.id]
    released = intake.release_incidents(T0 + timedelta(seconds=5))
    # The queue is in severity order (critical first; first come first within a severity): the
    # incident, as grave as its gravest alert, stands before a loose alert of lower severity.
    expected = sorted([loose, released[0]], key=lambda e: RANK[e.severity])
    assert [e.id for e in state.queue] == [e.id for e in expected]
    assert state.incidents["g1"].decided_event_id == released[0].id and state.incidents_opened == 1
    again = EventIntake(state)  # after continue-as-new: the book is the carried state
    assert again.incidents.incidents["g1"].decided_event_id == released[0].id
