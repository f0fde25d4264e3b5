"""Carrying out an approved postgres plan once, and checking afterwards that it worked.

Each target is acted on in one statement that applies only while the target is still the planned
occurrence (a session: same pid, backend start and query/transaction/idle start; a table: same
vacuum count), so a statement can never hit a query that reused the pid. The ledger entry records
each target done; a retry after a crash skips those (and reports them as done), and a retry after
the result was recorded answers with it.
"""

from __future__ import annotations

from typing import Any

from agents.builtin.postgres import queries
from agents.builtin.postgres.checks import BLOAT, Check
from agents.builtin.postgres.plan import pinned_sessions, pinned_tables, signal_function, token, vacuum_verb
from agents.builtin.postgres.settings import PostgresSettings
from agents.ledger import LedgerEntry
from aiops.contracts.models import ActionResult

GONE = "already gone (ended, or no longer the same occurrence)"


def _done(entry: LedgerEntry, kind: str) -> dict[str, tuple[str, str]]:
    """The targets an earlier attempt finished: their token, name and outcome."""
    return {
        str(step.data["token"]): (str(step.data["name"]), str(step.data["outcome"]))
        for step in entry.steps
        if step.name == kind
    }


async def execute_sessions(
    conn: Any, entry: LedgerEntry, check: Check, operation: str, changes: list[str]
) -> ActionResult:
    function = signal_function(operation)
    sessions = pinned_sessions(changes)
    if entry.intent is None:
        entry.intend({"check": check, "function": function, "sessions": [token(s) for s in sessions]})
    done = _done(entry, "session")
    outcomes: dict[str, str] = {}
    for session in sessions:
        key = token(session)
        if key in done:
            outcomes[done[key][0]] = done[key][1]
            continue
        # One statement: the session is signalled only if it is still the same occurrence.
        signalled = await conn.fetchval(
            f"SELECT {function}(a.pid) FROM pg_stat_activity a WHERE {queries.same_occurrence(check)}",
            session["pid"],
            session["backend_start_us"],
            session["occurrence_us"],
        )
        name, outcome = str(session["pid"]), "signalled" if signalled else GONE
        outcomes[name] = outcome
        entry.step("session", {"token": key, "name": name, "outcome": outcome})
    count = sum(1 for v in outcomes.values() if v == "signalled")
    return entry.finish(
        ActionResult(
            success=True,
            message=f"{function}: {count} session(s) signalled, {len(outcomes) - count} already gone",
            data={"function": function, "sessions": outcomes, "check": check},
        )
    )


async def execute_vacuum(
    conn: Any, entry: LedgerEntry, settings: PostgresSettings, changes: list[str]
) -> ActionResult:
    verb = vacuum_verb(settings)
    tables = pinned_tables(changes)
    if entry.intent is None:
        entry.intend({"check": BLOAT, "verb": verb, "tables": [relid for relid, _ in tables]})
    done = _done(entry, "table")
    outcomes: dict[str, str] = {}
    for relid, vacuums in tables:
        key = f"{relid}@{vacuums}"
        if key in done:
            outcomes[done[key][0]] = done[key][1]
            continue
        row = await conn.fetchrow(
            "SELECT format('%I.%I', schemaname, relname) AS name,"
            " vacuum_count + autovacuum_count AS vacuums FROM pg_stat_user_tables WHERE relid = $1",
            relid,
        )
        if row is None:
            name, outcome = str(relid), "table no longer exists"
        elif int(row["vacuums"]) > vacuums:
            name, outcome = str(row["name"]), "already vacuumed since the plan"
        else:
            await conn.execute(f"{verb} {row['name']}")
            name, outcome = str(row["name"]), "vacuumed"
        outcomes[name] = outcome
        entry.step("table", {"token": key, "name": name, "outcome": outcome})
    return entry.finish(
        ActionResult(
            success=True,
            message="; ".join(f"{k}: {v}" for k, v in outcomes.items()) or "no table to vacuum",
            data={"tables": outcomes},
        )
    )


async def fixed(conn: Any, settings: PostgresSettings, check: Check, changes: list[str]) -> bool:
    """Whether no planned table is still bloated, or no planned session is still the same occurrence."""
    if check == BLOAT:
        for relid, _ in pinned_tables(changes):
            if any(queries.still_bloated(t, settings) for t in await queries.bloated(conn, settings, relid)):
                return False
        return True
    for session in pinned_sessions(changes):
        if await queries.matching_session(conn, check, session) is not None:
            return False
    return True
