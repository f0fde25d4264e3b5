"""How an audit row is built: bounded in size, keyed so a retried write lands once.

Pure (no Temporal calls; the run id and the time are passed in), because two
places build the same rows: the agent workflow's outbox, and the local activities
that write their rows themselves (a decided batch's, ``AgentActivities.decide_events``;
an agent's ``started`` row, ``start_agent``) so that neither costs a separate audit
activity. Both must produce the same key for the same step, or a row would land twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiops.contracts.action import action_workflow_id
from aiops.contracts.activities import AuditRecord, AuditStep, EventDecision
from aiops.contracts.fields import map_leaves
from aiops.contracts.models import SystemEvent

# A single text in a row (an event source, a comment, an error) is cut to this many characters.
MAX_TEXT = 2000
MAX_KEY = 500


def _cut(value: Any) -> Any:
    if not isinstance(value, str) or len(value) <= MAX_TEXT:
        return value
    suffix = f"... ({len(value)} chars)"
    return value[: MAX_TEXT - len(suffix)] + suffix


def bounded(value: Any) -> Any:
    """``value`` with every string cut to at most ``MAX_TEXT`` characters, so no row can be huge
    (idempotent: a cut text fits, and is not cut again)."""
    return map_leaves(value, _cut)


def bounded_record(record: AuditRecord) -> AuditRecord:
    return record.model_copy(
        update={"detail": bounded(record.detail), "actor": bounded(record.actor), "key": record.key[:MAX_KEY]}
    )


def event_record(
    agent_id: str,
    run_id: str,
    event: SystemEvent,
    decision: EventDecision,
    attempts: int,
    config_version: int | None,
    at: datetime,
    filtered: bool = False,
    incident: str | None = None,
) -> AuditRecord:
    """The row for one event's decision (or its filtering, or its joining an incident).

    ``attempts`` is the event's failed decision attempts after this one was settled: one row
    per attempt, so a retried decision does not hide the final outcome. Not yet bounded:
    whoever writes it applies ``bounded_record``.
    """
    extra: dict[str, Any] = {}
    if filtered:
        extra["filtered"] = "the agent does not subscribe to this event type"
    if incident is not None:
        extra["incident"] = incident  # grouped: decided with its incident, not alone
    return AuditRecord(
        agent_id=agent_id,
        step=AuditStep.EVENT_RECEIVED,
        key=f"{agent_id}/{run_id}:event:{event.id}:{attempts}:{int(decision.error is None)}",
        occurred_at=at,
        detail={
            **extra,
            "event_id": event.id,
            "type": event.type.value,
            "source": event.source,
            "severity": event.severity.value,
            "correlation_id": event.correlation_id,
            "timestamp": event.timestamp.isoformat(),
            "proposed_action": action_workflow_id(agent_id, event.id) if decision.action else None,
            "decision_error": decision.error,
            "config_version": config_version,
        },
    )


def lifecycle_record(
    agent_id: str, run_id: str, what: str, sequence: int, actor: str, at: datetime, **detail: Any
) -> AuditRecord:
    """The row for a step of the agent's life (``started``, ``paused``, ``stopped``, ...).
    ``sequence`` (events and signals taken so far in the run) tells apart the same step taken
    twice in one run. Not yet bounded: whoever writes it applies ``bounded_record``."""
    return AuditRecord(
        agent_id=agent_id,
        step=AuditStep.AGENT_LIFECYCLE,
        key=f"{agent_id}/{run_id}:{what}:{sequence}",
        actor=actor,
        occurred_at=at,
        detail={"state": what, **detail},
    )
