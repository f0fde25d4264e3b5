"""Incidents: an alert storm becomes one decision per incident, not one per alert.

Pure and deterministic (``now`` is passed in; unit-tested directly). With
``runtime.incident_window_seconds`` set, an event that carries a correlation
(its ``correlation_id`` — Alertmanager's group key through the gateway — or,
with ``runtime.incident_group_by``, the values of those labels) joins the open
incident of that correlation instead of being decided alone. When the window
after the incident's first event has passed, the incident is handed to the
agent as ONE event (type ``alert``, id ``incident:<key digest>:<n>``) whose
``data.alerts`` holds every alert seen so far; later alerts of a decided
incident only update it. Alerts whose ``data.status`` is ``resolved`` resolve
their alert; an incident whose alerts are all resolved closes.

Memory stays bounded whatever the incident's size, and it decides on everything still firing:
the first ``MAX_ALERTS_KEPT`` alerts are kept whole (the sample the decision sees), the firing
alerts beyond them are tracked by a 12-character digest of their fingerprint up to
``MAX_FIRING_TRACKED``, and past that only counted (``firing_untracked``). A resend of a tracked
or sampled alert changes nothing; a resolution of one untracks it. The approximation, only past
both bounds: a resolution of an untracked alert lowers the count by one (Alertmanager resolves
only what fired), and a resend of an untracked firing alert raises it, so the count can be too
high (the incident stays open and decides) but never reaches 0 while something still fires.
The incident event says how many fire (``data.incident.firing``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from aiops.contracts.config import RuntimeSettings
from aiops.contracts.incidents import Incident, IncidentAlert, IncidentSummary
from aiops.contracts.models import EventType, SystemEvent

MAX_OPEN_INCIDENTS = 500  # carried state stays bounded; past it, events are decided alone
MAX_ALERTS_KEPT = 50  # per incident, whole; the rest are tracked by digest, then counted
MAX_FIRING_TRACKED = 500  # digests per incident (about 7.5 KB carried)


def correlation_of(event: SystemEvent, runtime: RuntimeSettings) -> str | None:
    """The incident key of ``event``, or None when it is decided alone."""
    if runtime.incident_window_seconds is None:
        return None
    if runtime.incident_group_by:
        labels = event.data.get("labels")
        if not isinstance(labels, dict):
            return None
        return "|".join(f"{name}={labels.get(name, '')}" for name in runtime.incident_group_by)
    return event.correlation_id


def _fingerprint(event: SystemEvent) -> str:
    found = event.data.get("fingerprint")
    if isinstance(found, str) and found:
        return found[:128]
    # One alert keeps its identity across firing and resolved: drop the status from the id.
    return event.id.replace(":resolved:", ":").replace(":firing:", ":")[:128]


def _track(incident: Incident, fingerprint: str, resolved: bool) -> None:
    """Follow an alert beyond the sample: by digest while there is room, else by count."""
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    if digest in incident.firing_tracked:
        if resolved:
            incident.firing_tracked.remove(digest)
    elif resolved:
        incident.firing_untracked = max(0, incident.firing_untracked - 1)
    elif len(incident.firing_tracked) < MAX_FIRING_TRACKED:
        incident.firing_tracked.append(digest)
    else:
        incident.firing_untracked += 1


class IncidentBook:
    """The open incidents of one agent; ``incidents`` is the carried state it works on."""

    def __init__(self, incidents: dict[str, Incident], opened: int) -> None:
        self.incidents = incidents  # open incidents by key
        self.opened = opened  # incidents opened in the agent's life: numbers them

    def add(self, key: str, event: SystemEvent, now: datetime, window_seconds: float) -> bool:
        """Put ``event`` in its incident; False when the book is full (decide it alone)."""
        incident = self.incidents.get(key)
        if incident is None:
            if len(self.incidents) >= MAX_OPEN_INCIDENTS:
                return False
            self.opened += 1
            incident = Incident(
                key=key, number=self.opened, opened_at=now, decide_at=now + timedelta(seconds=window_seconds)
            )
            self.incidents[key] = incident
        status = str(event.data.get("status", "firing"))
        fingerprint = _fingerprint(event)
        incident.alerts_total += 1
        if fingerprint not in incident.alerts and len(incident.alerts) >= MAX_ALERTS_KEPT:
            _track(incident, fingerprint, resolved=status == "resolved")
        else:
            annotations = event.data.get("annotations")
            summary = annotations.get("summary", "") if isinstance(annotations, dict) else ""
            incident.alerts[fingerprint] = IncidentAlert(
                event_id=event.id,
                fingerprint=fingerprint,
                source=event.source,
                severity=event.severity,
                status="resolved" if status == "resolved" else "firing",
                summary=str(summary)[:200],
                at=now,
            )
        if incident.resolved:  # every alert it knows is resolved: the incident is over
            del self.incidents[key]
        return True

    def due(self, now: datetime, all_now: bool = False) -> list[SystemEvent]:
        """The incident events whose window has passed (each incident is decided once)."""
        ready = []
        for incident in self.incidents.values():
            passed = all_now or now >= incident.decide_at
            if incident.decided_event_id is None and passed and not incident.resolved:
                event = incident_event(incident, now)
                incident.decided_event_id = event.id
                ready.append(event)
        return ready

    def close_resolved(self) -> list[Incident]:
        """Close the incidents whose alerts are all resolved; return them."""
        closed = [i for i in self.incidents.values() if i.resolved]
        for incident in closed:
            del self.incidents[incident.key]
        return closed

    def next_deadline(self) -> datetime | None:
        pending = [i.decide_at for i in self.incidents.values() if i.decided_event_id is None]
        return min(pending, default=None)

    def summaries(self) -> list[IncidentSummary]:
        return summaries(self.incidents)


def summaries(incidents: dict[str, Incident]) -> list[IncidentSummary]:
    """What ``status`` shows of the open incidents, oldest first."""
    return [
        IncidentSummary(
            key=i.key,
            opened_at=i.opened_at,
            decided=i.decided_event_id is not None,
            action_event_id=i.decided_event_id,
            alerts=i.alerts_total,
            firing=i.firing,
            severity=i.severity,
        )
        for i in sorted(incidents.values(), key=lambda i: i.opened_at)
    ]


def incident_event(incident: Incident, now: datetime) -> SystemEvent:
    digest = hashlib.sha256(incident.key.encode()).hexdigest()[:16]
    alerts: list[dict[str, Any]] = [a.model_dump(mode="json") for a in incident.alerts.values()]
    sources = sorted({a.source for a in incident.alerts.values()})
    return SystemEvent(
        id=f"incident:{digest}:{incident.number}",
        type=EventType.ALERT,
        source=sources[0] if len(sources) == 1 else f"incident ({len(sources)} sources)",
        severity=incident.severity,
        timestamp=now,
        correlation_id=incident.key[:256],
        data={
            "incident": {
                "key": incident.key,
                "opened_at": incident.opened_at.isoformat(),
                "alerts_total": incident.alerts_total,
                "firing": incident.firing,
                "sources": sources[:20],
            },
            "alerts": alerts,
        },
    )
