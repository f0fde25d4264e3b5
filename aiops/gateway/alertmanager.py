"""Prometheus Alertmanager's webhook payload (version 4), and one ``SystemEvent`` per alert.

The event id is ``am:<fingerprint>:<status>:<startsAt in µs since the epoch>``: the
same alert in the same state always gets the same id, so Alertmanager's retries, its
``repeat_interval`` resends and a gateway restarted mid-delivery reach the agent as
duplicates it drops; the alert resolving (another status) or firing again (another
``startsAt``) is a new event. The group key travels as the event's ``correlation_id``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiops.contracts.limits import MAX_EVENT_BYTES as MAX_EVENT_BYTES
from aiops.contracts.models import SystemEvent
from aiops.contracts.text import escape_for_display
from aiops.gateway.routing import Route

# The agent workflow refuses events over MAX_EVENT_BYTES (aiops.contracts.limits, re-exported here
# for the gateway's intake); the gateway refuses them up front, with the reason, instead of letting
# a signal drop them silently.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Lenient(BaseModel):
    # Alertmanager adds fields now and then: unknown ones are ignored, known ones checked.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, hide_input_in_errors=True)


class Alert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(default="", pattern=r"^[A-Za-z0-9]{0,64}$")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def stable_fingerprint(self) -> str:
        """Alertmanager's fingerprint; for a sender that leaves it out, a digest of the labels."""
        if self.fingerprint:
            return self.fingerprint
        canonical = json.dumps(sorted(self.labels.items()), separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class WebhookPayload(_Lenient):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=4096)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    alerts: list[Alert] = Field(min_length=1)


def alert_event_id(fingerprint: str, status: str, starts_at: datetime) -> str:
    """``am:<fingerprint>:<status>:<µs>``: stable across resends, new when the alert resolves or re-fires."""
    aware = starts_at if starts_at.tzinfo else starts_at.replace(tzinfo=UTC)
    micros = (aware - EPOCH) // timedelta(microseconds=1)
    return f"am:{fingerprint}:{status}:{micros}"


def alert_event(payload: WebhookPayload, alert: Alert, route: Route, source: str) -> SystemEvent:
    """The event an agent receives for ``alert`` taken by ``route``."""
    fingerprint = alert.stable_fingerprint()
    resolved = alert.status == "resolved"
    ends_at = alert.ends_at if alert.ends_at is not None and alert.ends_at.year > 1 else None
    data: dict[str, Any] = {
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "fingerprint": fingerprint,
        "starts_at": alert.starts_at.isoformat(),
        "ends_at": ends_at.isoformat() if ends_at else None,
        "group_key": payload.group_key,
        "group_labels": payload.group_labels,
        "receiver": payload.receiver,
        "external_url": payload.external_url,
        "route": route.name,
        "gateway_source": source,
    }
    return SystemEvent(
        id=alert_event_id(fingerprint, alert.status, alert.starts_at),
        type=route.event_type,
        # A label value may hold control or bidi characters, which an event's names refuse: they are
        # written as escapes (``\u202e``) instead, so the alert is still decided and reads as it is.
        source=escape_for_display(route.event_source(alert.labels)),
        severity=route.severity(alert.labels),
        timestamp=(ends_at or datetime.now(UTC)) if resolved else alert.starts_at,
        data=data,
        correlation_id=escape_for_display(payload.group_key),
    )


def event_size(event: SystemEvent) -> int:
    return len(event.model_dump_json().encode())
