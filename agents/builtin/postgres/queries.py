"""What the postgres agent reads from the server: sessions, lock chains, bloated tables, usage.

Everything here is read-only. A session is named by its *occurrence*: its pid, its
``backend_start`` and the start of what it is doing (query, transaction or idle period), all to
the microsecond, so that a later statement can be made to apply to that occurrence only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.builtin.postgres.checks import CONNECTIONS, IDLE_IN_TRANSACTION, LOCK_CHAINS, LONG_QUERIES, Check
from agents.builtin.postgres.settings import PostgresSettings
from aiops.contracts.errors import AgentError

APPLICATION_NAME_PREFIX = "aiops-agent"

SESSION_COLUMNS = """
    a.pid, a.usename, a.datname, a.application_name, host(a.client_addr) AS client,
    a.backend_start, a.xact_start, a.query_start, a.state_change, a.state,
    a.wait_event_type, left(a.query, 300) AS query,
    extract(epoch FROM now() - a.query_start)::float8 AS query_age,
    extract(epoch FROM now() - a.xact_start)::float8 AS xact_age,
    extract(epoch FROM now() - a.state_change)::float8 AS state_age
"""
# Sessions the agent may look at: client backends in the watched databases, not the agent's own.
SESSION_FILTER = """
    a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
    AND (cardinality($1::text[]) = 0 AND a.datname = current_database() OR a.datname = ANY($1::text[])
         OR '*' = ANY($1::text[]))
    AND NOT (coalesce(a.usename, '') = ANY($2::text[]))
    AND NOT (coalesce(a.application_name, '') = ANY($3::text[]))
    AND coalesce(a.application_name, '') NOT LIKE 'aiops-agent%'
"""

# What one kind of occurrence is pinned by: the column whose start time names it, and the
# condition the session must still be in for the statement to apply to it.
OCCURRENCE = {
    LONG_QUERIES: ("query_start", "a.state = 'active'"),
    IDLE_IN_TRANSACTION: ("xact_start", "a.state LIKE 'idle in transaction%'"),
    LOCK_CHAINS: ("xact_start", "a.xact_start IS NOT NULL"),
    CONNECTIONS: ("state_change", "a.state = 'idle'"),
}


def same_occurrence(check: Check) -> str:
    """SQL that holds for the session ``$1`` only while it is the occurrence ``$2``/``$3``."""
    column, condition = OCCURRENCE[check]
    return (
        "a.pid = $1 AND (extract(epoch FROM a.backend_start) * 1000000)::bigint = $2"
        f" AND (extract(epoch FROM a.{column}) * 1000000)::bigint = $3 AND {condition}"
    )


def _micros(value: datetime | None) -> int:
    if value is None:
        return 0
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000)


def session_key(row: Any, check: Check) -> dict[str, Any]:
    column = OCCURRENCE[check][0]
    return {
        "pid": int(row["pid"]),
        "backend_start_us": _micros(row["backend_start"]),
        "occurrence_us": _micros(row[column]),
    }


def session_info(row: Any, check: Check) -> dict[str, Any]:
    return {
        **session_key(row, check),
        "user": row["usename"],
        "database": row["datname"],
        "application": row["application_name"],
        "client": row["client"],
        "state": row["state"],
        "query": row["query"],
        "query_age_seconds": round(float(row["query_age"] or 0), 1),
        "xact_age_seconds": round(float(row["xact_age"] or 0), 1),
        "state_age_seconds": round(float(row["state_age"] or 0), 1),
    }


async def connect(settings: PostgresSettings, agent_id: str, statement_timeout: float | None = None) -> Any:
    """A connection named after the agent (so the agent never targets its own sessions)."""
    import asyncpg  # lazily: importing agents.builtin stays cheap

    timeout_ms = int(1000 * (statement_timeout or settings.statement_timeout_seconds))
    try:
        return await asyncpg.connect(
            settings.dsn_secret,
            timeout=settings.connect_timeout_seconds,
            server_settings={
                "application_name": f"{APPLICATION_NAME_PREFIX}:{agent_id}"[:63],
                "statement_timeout": str(timeout_ms),
            },
        )
    except (TimeoutError, OSError) as err:
        raise AgentError(f"cannot reach PostgreSQL at {settings.where()}: {type(err).__name__}") from None
    except asyncpg.PostgresError as err:
        # the server's message names the problem (auth, unknown db), never the password
        raise AgentError(f"PostgreSQL at {settings.where()} refused the connection: {err}") from None


def _filter_args(settings: PostgresSettings) -> tuple[list[str], list[str], list[str]]:
    return settings.databases, settings.protected_users, settings.protected_applications


async def offenders(conn: Any, settings: PostgresSettings, check: Check) -> list[dict[str, Any]]:
    """The sessions in the state ``check`` looks for, for longer than its threshold."""
    condition, threshold = {
        LONG_QUERIES: ("a.state = 'active' AND now() - a.query_start", settings.long_query_seconds),
        IDLE_IN_TRANSACTION: (
            "a.state LIKE 'idle in transaction%' AND now() - a.state_change",
            settings.idle_in_transaction_seconds,
        ),
        CONNECTIONS: ("a.state = 'idle' AND now() - a.state_change", settings.idle_session_seconds),
    }[check]
    rows = await conn.fetch(
        f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity a WHERE {SESSION_FILTER}"
        f" AND {condition} > make_interval(secs => $4) ORDER BY a.backend_start LIMIT $5",
        *_filter_args(settings),
        threshold,
        settings.max_sessions_per_action if check == CONNECTIONS else 1000,
    )
    return [session_info(row, check) for row in rows]


async def matching_session(conn: Any, check: Check, session: dict[str, Any]) -> Any:
    """The session's row while it is still the pinned occurrence, else None."""
    return await conn.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity a WHERE {same_occurrence(check)}",
        int(session["pid"]),
        int(session["backend_start_us"]),
        int(session["occurrence_us"]),
    )


async def lock_chains(conn: Any, settings: PostgresSettings) -> list[dict[str, Any]]:
    """Root blockers (blocking others, not blocked themselves) with the sessions waiting on them."""
    waiting = await conn.fetch(
        f"""
        SELECT a.pid, pg_blocking_pids(a.pid) AS blockers,
               extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l
                                          WHERE l.pid = a.pid AND NOT l.granted))::float8 AS waited
        FROM pg_stat_activity a
        WHERE {SESSION_FILTER} AND cardinality(pg_blocking_pids(a.pid)) > 0
        """,
        *_filter_args(settings),
    )
    blocked_by = {int(r["pid"]): [int(p) for p in r["blockers"]] for r in waiting}
    waited = {int(r["pid"]): float(r["waited"] or 0) for r in waiting}
    roots: dict[int, set[int]] = {}
    for pid in blocked_by:
        if waited[pid] < settings.lock_wait_seconds:
            continue
        stack, seen = list(blocked_by[pid]), {pid}
        while stack:
            blocker = stack.pop()
            if blocker in seen:
                continue
            seen.add(blocker)
            if blocked_by.get(blocker):
                stack.extend(blocked_by[blocker])
            else:
                roots.setdefault(blocker, set()).add(pid)
    if not roots:
        return []
    rows = await conn.fetch(
        f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity a WHERE a.pid = ANY($1::int[])"
        " AND a.backend_type = 'client backend'",
        list(roots),
    )
    chains = []
    for row in rows:
        if row["usename"] in settings.protected_users:
            continue
        if row["application_name"] in settings.protected_applications:
            continue
        if str(row["application_name"] or "").startswith(APPLICATION_NAME_PREFIX):
            continue
        waiters = sorted(roots[int(row["pid"])])
        chains.append(
            {
                "blocker": session_info(row, LOCK_CHAINS),
                "waiting_pids": waiters,
                "longest_wait_seconds": round(max(waited[w] for w in waiters), 1),
            }
        )
    return chains


async def bloated(conn: Any, settings: PostgresSettings, relid: int | None = None) -> list[dict[str, Any]]:
    """Tables over the dead-tuple thresholds (or the table ``relid``, whatever its state)."""
    rows = await conn.fetch(
        """
        SELECT relid, schemaname, relname, n_live_tup, n_dead_tup,
               vacuum_count + autovacuum_count AS vacuums,
               greatest(last_vacuum, last_autovacuum) AS last_vacuum,
               pg_total_relation_size(relid) AS bytes
        FROM pg_stat_user_tables
        WHERE ($3::oid IS NULL AND n_dead_tup >= $1 AND n_dead_tup > $2 * greatest(n_live_tup, 1))
           OR relid = $3::oid
        ORDER BY n_dead_tup DESC LIMIT 50
        """,
        settings.min_dead_tuples,
        settings.dead_tuple_ratio,
        relid,
    )
    return [
        {
            "relid": int(r["relid"]),
            "table": f"{r['schemaname']}.{r['relname']}",
            "live_tuples": int(r["n_live_tup"]),
            "dead_tuples": int(r["n_dead_tup"]),
            "vacuums": int(r["vacuums"]),
            "last_vacuum": r["last_vacuum"].isoformat() if r["last_vacuum"] else None,
            "bytes": int(r["bytes"]),
        }
        for r in rows
    ]


def still_bloated(table: dict[str, Any], settings: PostgresSettings) -> bool:
    dead = table["dead_tuples"]
    return bool(
        dead >= settings.min_dead_tuples and dead > settings.dead_tuple_ratio * max(table["live_tuples"], 1)
    )


async def connection_usage(conn: Any) -> dict[str, Any]:
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
               current_setting('max_connections')::int
               - current_setting('superuser_reserved_connections')::int AS available
        """
    )
    used, available = int(row["used"]), max(int(row["available"]), 1)
    return {"used": used, "available": available, "ratio": round(used / available, 3)}


async def qualified_name(conn: Any, relid: int) -> str | None:
    """``schema.table``, quoted where needed, of the table ``relid`` (None once it is dropped)."""
    name = await conn.fetchval(
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables WHERE relid = $1", relid
    )
    return None if name is None else str(name)
