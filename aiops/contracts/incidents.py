"""Incidents as the agent carries and shows them (the logic: ``workflows/agent/incidents.py``).

Re-exported by ``aiops.contracts.agent``, whose carried state and status hold them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aiops.contracts.models import Severity

SEVERITY_ORDER = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


class IncidentAlert(BaseModel):
    event_id: str
    fingerprint: str
    source: str
    severity: Severity
    status: str = "firing"
    summary: str = ""
    at: datetime


class Incident(BaseModel):
    key: str
    number: int  # the n-th incident of this key in this agent's life
    opened_at: datetime
    decide_at: datetime
    decided_event_id: str | None = None
    alerts: dict[str, IncidentAlert] = Field(default_factory=dict)  # a sample, by fingerprint
    alerts_total: int = 0
    # Firing alerts beyond the sample (see workflows/agent/incidents.py): digests of their
    # fingerprints up to a bound, then a count whose resolution is approximate.
    firing_tracked: list[str] = Field(default_factory=list)
    firing_untracked: int = 0

    @property
    def firing(self) -> int:
        """How many of its alerts are firing: the sample's, the tracked and the counted ones."""
        sampled = sum(a.status == "firing" for a in self.alerts.values())
        return sampled + len(self.firing_tracked) + self.firing_untracked

    @property
    def resolved(self) -> bool:
        return self.alerts_total > 0 and self.firing == 0

    @property
    def severity(self) -> Severity:
        return max(
            (a.severity for a in self.alerts.values()), key=SEVERITY_ORDER.index, default=Severity.INFO
        )


class IncidentSummary(BaseModel):
    """What ``status`` shows of an open incident."""

    key: str
    opened_at: datetime
    decided: bool
    action_event_id: str | None
    alerts: int
    firing: int
    severity: Severity
