"""The postgres agent's plans: the exact statements, each pinned to one session or table occurrence.

A plan line carries a token (``[session <pid>@<backend_start_us>/<occurrence_us>]`` or
``[table <relid>@<vacuum count>]``); execute reads the targets from the approved plan's lines,
never from the event, and acts on a target only while its token still matches.
"""

from __future__ import annotations

import re
from typing import Any

from agents.builtin.postgres import queries
from agents.builtin.postgres.checks import BLOAT, LOCK_CHAINS, LONG_QUERIES, Check
from agents.builtin.postgres.settings import PostgresSettings
from aiops.contracts.models import AgentAction, Plan

SESSION_TOKEN = re.compile(r"\[session (\d+)@(-?\d+)/(-?\d+)\]")
TABLE_TOKEN = re.compile(r"\[table (\d+)@(\d+)\]")


def token(session: dict[str, Any]) -> str:
    return f"[session {session['pid']}@{session['backend_start_us']}/{session['occurrence_us']}]"


def pinned_sessions(changes: list[str]) -> list[dict[str, int]]:
    """The session occurrences named by plan lines."""
    found = []
    for line in changes:
        if (match := SESSION_TOKEN.search(line)) is not None:
            pid, backend_us, occurrence_us = (int(g) for g in match.groups())
            found.append({"pid": pid, "backend_start_us": backend_us, "occurrence_us": occurrence_us})
    return found


def pinned_tables(changes: list[str]) -> list[tuple[int, int]]:
    """``(relid, vacuum count)`` of each table named by plan lines."""
    return [
        (int(match.group(1)), int(match.group(2)))
        for line in changes
        if (match := TABLE_TOKEN.search(line)) is not None
    ]


def operation(check: str, settings: PostgresSettings) -> str:
    if check == BLOAT:
        return "vacuum"
    if check == LONG_QUERIES and settings.long_query_action == "cancel":
        return "cancel"
    return "terminate"


def signal_function(operation: str) -> str:
    return "pg_cancel_backend" if operation == "cancel" else "pg_terminate_backend"


def vacuum_verb(settings: PostgresSettings) -> str:
    return "VACUUM (ANALYZE)" if settings.vacuum_analyze else "VACUUM"


def _describe(session: dict[str, Any]) -> str:
    query = " ".join(str(session.get("query") or "").split())
    return (
        f"user={session.get('user')} db={session.get('database')} app={session.get('application') or '-'} "
        f"client={session.get('client') or 'local'} state={session.get('state')} "
        f"query_age={session.get('query_age_seconds')}s xact_age={session.get('xact_age_seconds')}s "
        f"query: {query[:200]}"
    )


async def current_targets(
    conn: Any, settings: PostgresSettings, action: AgentAction, check: Check
) -> list[dict[str, Any]]:
    """The sessions the action would hit now: its pinned ones that still match, or (from an
    outside alert) whatever the check finds now."""
    pinned = action.parameters.get("sessions") or []
    if not pinned:
        if check == LOCK_CHAINS:
            chains = await queries.lock_chains(conn, settings)
            return [chain["blocker"] | {"waiting_pids": chain["waiting_pids"]} for chain in chains]
        return await queries.offenders(conn, settings, check)
    current = []
    for session in pinned:
        row = await queries.matching_session(conn, check, session)
        if row is not None:
            current.append(queries.session_info(row, check))
    return current


async def plan_sessions(conn: Any, settings: PostgresSettings, action: AgentAction, check: Check) -> Plan:
    function = signal_function(str(action.parameters.get("operation") or operation(check, settings)))
    targets = await current_targets(conn, settings, action, check)
    gone = len(action.parameters.get("sessions") or []) - len(targets)
    changes = [f"SELECT {function}({x['pid']});  -- {token(x)} {_describe(x)}" for x in targets]
    lines = [f"-- PostgreSQL {settings.where()}: {check.replace('_', ' ')}"]
    lines += changes or ["-- nothing to do: no session matches any more"]
    if check == LOCK_CHAINS:
        for x in targets:
            waiting = x.get("waiting_pids") or action.parameters.get("waiting_pids") or []
            lines.append(f"-- unblocks pid(s) {waiting} waiting on pid {x['pid']}")
    if gone > 0:
        lines.append(f"-- {gone} session(s) of the detection already ended or moved on: untouched")
    lines.append(
        "-- each statement runs only while the session is still in the same query/transaction/idle "
        "period (pid, backend_start and its start time must match)"
    )
    summary = f"{function} on {len(targets)} session(s) at {settings.where()} ({check})"
    return Plan(summary=summary, details="\n".join(lines), changes=changes)


async def vacuum_targets(conn: Any, settings: PostgresSettings, action: AgentAction) -> list[dict[str, Any]]:
    pinned = action.parameters.get("tables") or []
    found = (
        [t for p in pinned for t in await queries.bloated(conn, settings, int(p["relid"]))]
        if pinned
        else await queries.bloated(conn, settings)
    )
    for t in found:
        t["qualified"] = await queries.qualified_name(conn, t["relid"])
    return found


async def plan_vacuum(conn: Any, settings: PostgresSettings, action: AgentAction) -> Plan:
    verb = vacuum_verb(settings)
    changes = []
    for t in await vacuum_targets(conn, settings, action):
        ratio = t["dead_tuples"] / max(t["live_tuples"], 1)
        changes.append(
            f"{verb} {t['qualified']};  -- [table {t['relid']}@{t['vacuums']}] "
            f"dead={t['dead_tuples']} live={t['live_tuples']} ratio={ratio:.2f} "
            f"size={t['bytes'] // 1024}kB last_vacuum={t['last_vacuum'] or 'never'}"
        )
    details = "\n".join(
        [
            f"-- PostgreSQL {settings.where()}: table bloat",
            *(changes or ["-- no bloated table"]),
            "-- skipped if the table was vacuumed since (its vacuum count moved on)",
        ]
    )
    return Plan(
        summary=f"{verb} {len(changes)} table(s) at {settings.where()}", details=details, changes=changes
    )
