"""The postgres agent's detector: one event per occurrence of a condition, with a stable id.

An event id names the occurrence (a session's pid, backend start and query/transaction start; a
table's oid and vacuum count), so repeated detections of the same one are deduplicated by the
agent, and the next occurrence (a new query on the same pid) is a new event.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from agents.builtin.postgres import queries
from agents.builtin.postgres.checks import (
    BLOAT,
    CONNECTIONS,
    EVENT_TYPE,
    IDLE_IN_TRANSACTION,
    LOCK_CHAINS,
    LONG_QUERIES,
    SEVERITY,
    Check,
)
from agents.builtin.postgres.plan import token
from agents.builtin.postgres.settings import PostgresSettings
from aiops.contracts.models import SystemEvent

SESSION_EVENT_KIND = {LONG_QUERIES: "long-query", IDLE_IN_TRANSACTION: "idle-xact", LOCK_CHAINS: "lock-chain"}


def _event(settings: PostgresSettings, check: Check, event_id: str, data: dict[str, Any]) -> SystemEvent:
    return SystemEvent(
        id=event_id,
        type=EVENT_TYPE[check],
        source=f"postgres://{settings.where()}",
        severity=SEVERITY[check],
        data={"check": check, "detector": "postgres", **data},
    )


def _session_event(
    settings: PostgresSettings, check: Check, session: dict[str, Any], **data: Any
) -> SystemEvent:
    x = session
    event_id = f"pg-{SESSION_EVENT_KIND[check]}-{x['pid']}-{x['backend_start_us']}-{x['occurrence_us']}"
    return _event(settings, check, event_id, {"sessions": [session], **data})


def _connections_event(
    settings: PostgresSettings, usage: dict[str, Any], idle: list[dict[str, Any]]
) -> SystemEvent:
    keys = ",".join(token(x) for x in idle) or f"none-{int(time.time() // 3600)}"
    digest = hashlib.sha256(keys.encode()).hexdigest()[:16]
    return _event(settings, CONNECTIONS, f"pg-connections-{digest}", {"usage": usage, "sessions": idle})


async def detect(conn: Any, settings: PostgresSettings) -> list[SystemEvent]:
    """Every configured check, once."""
    events: list[SystemEvent] = []
    for check in (LONG_QUERIES, IDLE_IN_TRANSACTION):
        if check in settings.checks:
            found = await queries.offenders(conn, settings, check)
            events += [_session_event(settings, check, x) for x in found]
    if LOCK_CHAINS in settings.checks:
        for chain in await queries.lock_chains(conn, settings):
            events.append(_session_event(settings, LOCK_CHAINS, chain["blocker"], **chain))
    if BLOAT in settings.checks:
        for table in await queries.bloated(conn, settings):
            event_id = f"pg-bloat-{table['relid']}-{table['vacuums']}"
            events.append(_event(settings, BLOAT, event_id, {"tables": [table]}))
    if CONNECTIONS in settings.checks:
        usage = await queries.connection_usage(conn)
        if usage["ratio"] >= settings.connection_saturation_ratio:
            idle = await queries.offenders(conn, settings, CONNECTIONS)
            events.append(_connections_event(settings, usage, idle))
    return events
