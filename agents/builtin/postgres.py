"""The ``postgres`` agent: finds sessions and tables that hurt a PostgreSQL server and fixes them.

It watches, over asyncpg, one server (``settings.dsn_secret``, a secret reference to a
``postgresql://`` URL):

- long-running queries (``active`` longer than ``long_query_seconds``): ``pg_cancel_backend``
  (or ``pg_terminate_backend`` with ``long_query_action: terminate``);
- sessions idle in a transaction (longer than ``idle_in_transaction_seconds``):
  ``pg_terminate_backend``;
- blocking lock chains (someone waits on a lock longer than ``lock_wait_seconds``):
  ``pg_terminate_backend`` of the root blocker;
- table bloat (``n_dead_tup`` over ``min_dead_tuples`` and ``dead_tuple_ratio``): ``VACUUM (ANALYZE)``;
- connection saturation (``connection_saturation_ratio`` of ``max_connections``):
  ``pg_terminate_backend`` of the sessions idle longer than ``idle_session_seconds``.

Every target is pinned to one *occurrence*: a session is named by its pid, its
``backend_start`` and the start of what it is doing (query, transaction or idle period),
all to the microsecond; a table by its oid and its vacuum count. Execute only signals a
session whose occurrence still matches, so a retried execute (after a crash, on another
worker) can never hit a different query that reused the pid, and a table vacuumed since
is not vacuumed again. The targets come from the approved plan, never from the event alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from agents.base_agent import BaseAgent
from agents.registry import register_agent
from aiops.contracts.errors import AgentError, NonRetryableActionError
from aiops.contracts.models import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentConfig,
    EventType,
    Plan,
    RiskLevel,
    Severity,
    SystemEvent,
)
from aiops.contracts.secret_refs import is_reference

# ----- the checks and their defaults -------------------------------------------------------

LONG_QUERIES = "long_queries"
IDLE_IN_TRANSACTION = "idle_in_transaction"
LOCK_CHAINS = "lock_chains"
BLOAT = "bloat"
CONNECTIONS = "connections"
CHECKS = (LONG_QUERIES, IDLE_IN_TRANSACTION, LOCK_CHAINS, BLOAT, CONNECTIONS)

DEFAULT_RISK = {
    LONG_QUERIES: RiskLevel.MEDIUM,  # the statement is lost, the session and its transaction survive
    IDLE_IN_TRANSACTION: RiskLevel.MEDIUM,  # the transaction was doing nothing; its work is rolled back
    LOCK_CHAINS: RiskLevel.HIGH,  # kills a session that may be doing real work
    BLOAT: RiskLevel.LOW,  # plain VACUUM takes no exclusive lock
    CONNECTIONS: RiskLevel.HIGH,  # disconnects clients (idle ones)
}
SEVERITY = {
    LONG_QUERIES: Severity.MEDIUM,
    IDLE_IN_TRANSACTION: Severity.MEDIUM,
    LOCK_CHAINS: Severity.HIGH,
    BLOAT: Severity.LOW,
    CONNECTIONS: Severity.HIGH,
}
EVENT_TYPE = {
    LONG_QUERIES: EventType.ALERT,
    IDLE_IN_TRANSACTION: EventType.ALERT,
    LOCK_CHAINS: EventType.ALERT,
    BLOAT: EventType.METRIC_THRESHOLD,
    CONNECTIONS: EventType.METRIC_THRESHOLD,
}
DEFAULT_ALERT_NAMES = {
    "PostgresLongRunningQuery": LONG_QUERIES,
    "PostgresIdleInTransaction": IDLE_IN_TRANSACTION,
    "PostgresLockWaits": LOCK_CHAINS,
    "PostgresTableBloat": BLOAT,
    "PostgresConnectionsSaturated": CONNECTIONS,
}

NUMBERS: dict[str, tuple[float, float, float | None]] = {
    # name: (default, minimum, maximum)
    "long_query_seconds": (300.0, 0.0, None),
    "idle_in_transaction_seconds": (300.0, 0.0, None),
    "lock_wait_seconds": (30.0, 0.0, None),
    "min_dead_tuples": (10000.0, 0.0, None),
    "dead_tuple_ratio": (0.2, 0.0, None),
    "connection_saturation_ratio": (0.9, 0.0, 1.0),
    "idle_session_seconds": (600.0, 0.0, None),
    "max_sessions_per_action": (10.0, 1.0, 1000.0),
    "statement_timeout_seconds": (10.0, 0.1, 3600.0),
    "connect_timeout_seconds": (10.0, 0.1, 600.0),
    "vacuum_timeout_seconds": (900.0, 1.0, 86400.0),
    "verify_timeout_seconds": (10.0, 0.0, 600.0),
}
INTEGERS = {"min_dead_tuples", "max_sessions_per_action"}
KNOWN_SETTINGS = {
    "dsn_secret",
    "checks",
    "databases",
    "long_query_action",
    "protected_users",
    "protected_applications",
    "risk",
    "alert_names",
    "instance",
    "vacuum_analyze",
    *NUMBERS,
}

APPLICATION_NAME_PREFIX = "aiops-agent"
SESSION_TOKEN = re.compile(r"\[session (\d+)@(-?\d+)/(-?\d+)\]")
TABLE_TOKEN = re.compile(r"\[table (\d+)@(\d+)\]")


def _micros(value: datetime | None) -> int:
    if value is None:
        return 0
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000)


def _dsn_problem(value: Any) -> str | None:
    if value is None:
        return 'settings.dsn_secret is required: a reference to the PostgreSQL URL, e.g. "env:PG_DSN"'
    if not isinstance(value, str):
        return "settings.dsn_secret must be a string reference (env:NAME or file:/path)"
    if is_reference(value):
        return None  # not resolved yet: checked again once the worker resolved it
    if not value.startswith(("postgres://", "postgresql://")):
        # never echo the value: it is (or holds) a credential
        return "settings.dsn_secret must resolve to a PostgreSQL URL (postgresql://user@host:port/db)"
    return None


@dataclass
class Settings:
    dsn: str
    checks: list[str]
    databases: list[str]
    long_query_action: str
    protected_users: list[str]
    protected_applications: list[str]
    risk: dict[str, RiskLevel]
    alert_names: dict[str, str]
    instance: str | None
    vacuum_analyze: bool
    numbers: dict[str, float]

    @classmethod
    def of(cls, config: AgentConfig) -> Settings:
        s = config.settings
        risk = dict(DEFAULT_RISK)
        risk.update({k: RiskLevel(v) for k, v in (s.get("risk") or {}).items()})
        return cls(
            dsn=str(s.get("dsn_secret") or ""),
            checks=list(s.get("checks") or CHECKS),
            databases=list(s.get("databases") or []),
            long_query_action=str(s.get("long_query_action", "cancel")),
            protected_users=list(s.get("protected_users") or []),
            protected_applications=list(s.get("protected_applications") or []),
            risk=risk,
            alert_names=dict(s.get("alert_names") or DEFAULT_ALERT_NAMES),
            instance=s.get("instance"),
            vacuum_analyze=bool(s.get("vacuum_analyze", True)),
            numbers={name: float(s.get(name, spec[0])) for name, spec in NUMBERS.items()},
        )

    def n(self, name: str) -> float:
        return self.numbers[name]

    def where(self) -> str:
        """The server, without credentials: host:port/database."""
        parts = urlsplit(self.dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"


def validate_settings(config: AgentConfig) -> list[str]:
    s = config.settings
    problems: list[str] = []
    unknown = sorted(set(s) - KNOWN_SETTINGS)
    if unknown:
        problems.append(f"unknown setting(s) {unknown}; known: {sorted(KNOWN_SETTINGS)}")
    dsn = _dsn_problem(s.get("dsn_secret"))
    if dsn:
        problems.append(dsn)
    for name, (_, low, high) in NUMBERS.items():
        value = s.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"settings.{name} must be a number")
        elif name in INTEGERS and not float(value).is_integer():
            problems.append(f"settings.{name} must be a whole number")
        elif value < low or (high is not None and value > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            problems.append(f"settings.{name} must be {bound} (got {value})")
    checks = s.get("checks")
    if checks is not None:
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            problems.append(f"settings.checks must be a list of check names from {list(CHECKS)}")
        elif bad := [c for c in checks if c not in CHECKS]:
            problems.append(f"settings.checks: unknown check(s) {bad}; known: {list(CHECKS)}")
    for name in ("databases", "protected_users", "protected_applications"):
        value = s.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            problems.append(f"settings.{name} must be a list of strings")
    if s.get("long_query_action", "cancel") not in ("cancel", "terminate"):
        problems.append('settings.long_query_action must be "cancel" or "terminate"')
    risk = s.get("risk")
    if risk is not None:
        if not isinstance(risk, dict):
            problems.append("settings.risk must map check names to risk levels")
        else:
            for check, level in risk.items():
                if check not in CHECKS:
                    problems.append(f"settings.risk: unknown check {check!r}; known: {list(CHECKS)}")
                elif level not in [r.value for r in RiskLevel]:
                    problems.append(
                        f"settings.risk.{check} must be one of {[r.value for r in RiskLevel]} (got {level!r})"
                    )
    names = s.get("alert_names")
    if names is not None and (
        not isinstance(names, dict) or not all(isinstance(v, str) and v in CHECKS for v in names.values())
    ):
        problems.append(f"settings.alert_names must map alert names to checks from {list(CHECKS)}")
    if s.get("instance") is not None and not isinstance(s.get("instance"), str):
        problems.append("settings.instance must be a string (the alerts' instance label)")
    if not isinstance(s.get("vacuum_analyze", True), bool):
        problems.append("settings.vacuum_analyze must be true or false")
    return problems


# ----- queries ----------------------------------------------------------------------------------

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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _session_key(row: Any, check: str) -> dict[str, Any]:
    column = OCCURRENCE[check][0]
    return {
        "pid": int(row["pid"]),
        "backend_start_us": _micros(row["backend_start"]),
        "occurrence_us": _micros(row[column]),
    }


def _session_info(row: Any, check: str) -> dict[str, Any]:
    return {
        **_session_key(row, check),
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


def _token(session: dict[str, Any]) -> str:
    return f"[session {session['pid']}@{session['backend_start_us']}/{session['occurrence_us']}]"


def _describe(session: dict[str, Any]) -> str:
    query = " ".join(str(session.get("query") or "").split())
    return (
        f"user={session.get('user')} db={session.get('database')} app={session.get('application') or '-'} "
        f"client={session.get('client') or 'local'} state={session.get('state')} "
        f"query_age={session.get('query_age_seconds')}s xact_age={session.get('xact_age_seconds')}s "
        f"query: {query[:200]}"
    )


@register_agent("postgres")
class PostgresAgent(BaseAgent):
    """Long queries, idle transactions, lock chains, bloat and saturation on one PostgreSQL server."""

    # ----- connection ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return Settings.of(self.config)

    async def _connect(self, statement_timeout: float | None = None) -> Any:
        import asyncpg  # lazily: importing agents.builtin stays cheap

        s = self.settings
        timeout_ms = int(1000 * (statement_timeout or s.n("statement_timeout_seconds")))
        try:
            return await asyncpg.connect(
                s.dsn,
                timeout=s.n("connect_timeout_seconds"),
                server_settings={
                    "application_name": f"{APPLICATION_NAME_PREFIX}:{self.agent_id}"[:63],
                    "statement_timeout": str(timeout_ms),
                },
            )
        except (TimeoutError, OSError) as err:
            raise AgentError(f"cannot reach PostgreSQL at {s.where()}: {type(err).__name__}") from None
        except asyncpg.PostgresError as err:
            # the server's message names the problem (auth, unknown db), never the password
            raise AgentError(f"PostgreSQL at {s.where()} refused the connection: {err}") from None

    def _filter_args(self) -> tuple[list[str], list[str], list[str]]:
        s = self.settings
        return s.databases, s.protected_users, s.protected_applications

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        s = self.settings
        conn = await self._connect()
        try:
            events: list[SystemEvent] = []
            if LONG_QUERIES in s.checks:
                events += [self._event(LONG_QUERIES, [x]) for x in await self._offenders(conn, LONG_QUERIES)]
            if IDLE_IN_TRANSACTION in s.checks:
                found = await self._offenders(conn, IDLE_IN_TRANSACTION)
                events += [self._event(IDLE_IN_TRANSACTION, [x]) for x in found]
            if LOCK_CHAINS in s.checks:
                events += [self._lock_event(chain) for chain in await self._lock_chains(conn)]
            if BLOAT in s.checks:
                events += [self._bloat_event(table) for table in await self._bloated(conn)]
            if CONNECTIONS in s.checks:
                usage = await self._connection_usage(conn)
                if usage["ratio"] >= s.n("connection_saturation_ratio"):
                    idle = await self._offenders(conn, CONNECTIONS)
                    events.append(self._connections_event(usage, idle))
            return events
        finally:
            await conn.close()

    async def _offenders(self, conn: Any, check: str) -> list[dict[str, Any]]:
        s = self.settings
        condition, threshold = {
            LONG_QUERIES: ("a.state = 'active' AND now() - a.query_start", "long_query_seconds"),
            IDLE_IN_TRANSACTION: (
                "a.state LIKE 'idle in transaction%' AND now() - a.state_change",
                "idle_in_transaction_seconds",
            ),
            CONNECTIONS: ("a.state = 'idle' AND now() - a.state_change", "idle_session_seconds"),
        }[check]
        rows = await conn.fetch(
            f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity a WHERE {SESSION_FILTER}"
            f" AND {condition} > make_interval(secs => $4) ORDER BY a.backend_start LIMIT $5",
            *self._filter_args(),
            s.n(threshold),
            int(s.n("max_sessions_per_action")) if check == CONNECTIONS else 1000,
        )
        return [_session_info(row, check) for row in rows]

    async def _lock_chains(self, conn: Any) -> list[dict[str, Any]]:
        """Root blockers (blocking others, not blocked themselves) with the sessions waiting on them."""
        waiting = await conn.fetch(
            f"""
            SELECT a.pid, pg_blocking_pids(a.pid) AS blockers,
                   extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l
                                              WHERE l.pid = a.pid AND NOT l.granted))::float8 AS waited
            FROM pg_stat_activity a
            WHERE {SESSION_FILTER} AND cardinality(pg_blocking_pids(a.pid)) > 0
            """,
            *self._filter_args(),
        )
        blocked_by = {int(r["pid"]): [int(p) for p in r["blockers"]] for r in waiting}
        waited = {int(r["pid"]): float(r["waited"] or 0) for r in waiting}
        roots: dict[int, set[int]] = {}
        for pid in blocked_by:
            if waited[pid] < self.settings.n("lock_wait_seconds"):
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
        s = self.settings
        chains = []
        for row in rows:
            if row["usename"] in s.protected_users or row["application_name"] in s.protected_applications:
                continue
            if str(row["application_name"] or "").startswith(APPLICATION_NAME_PREFIX):
                continue
            waiters = sorted(roots[int(row["pid"])])
            chains.append(
                {
                    "blocker": _session_info(row, LOCK_CHAINS),
                    "waiting_pids": waiters,
                    "longest_wait_seconds": round(max(waited[w] for w in waiters), 1),
                }
            )
        return chains

    async def _bloated(self, conn: Any, relid: int | None = None) -> list[dict[str, Any]]:
        s = self.settings
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
            int(s.n("min_dead_tuples")),
            s.n("dead_tuple_ratio"),
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

    async def _connection_usage(self, conn: Any) -> dict[str, Any]:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
                   current_setting('max_connections')::int
                   - current_setting('superuser_reserved_connections')::int AS available
            """
        )
        used, available = int(row["used"]), max(int(row["available"]), 1)
        return {"used": used, "available": available, "ratio": round(used / available, 3)}

    # ----- events ----------------------------------------------------------------------------

    def _base_event(self, check: str, event_id: str, data: dict[str, Any]) -> SystemEvent:
        return SystemEvent(
            id=event_id,
            type=EVENT_TYPE[check],
            source=f"postgres://{self.settings.where()}",
            severity=SEVERITY[check],
            data={"check": check, "detector": "postgres", **data},
        )

    def _event(self, check: str, sessions: list[dict[str, Any]]) -> SystemEvent:
        x = sessions[0]
        kind = {LONG_QUERIES: "long-query", IDLE_IN_TRANSACTION: "idle-xact"}[check]
        event_id = f"pg-{kind}-{x['pid']}-{x['backend_start_us']}-{x['occurrence_us']}"
        return self._base_event(check, event_id, {"sessions": sessions})

    def _lock_event(self, chain: dict[str, Any]) -> SystemEvent:
        b = chain["blocker"]
        event_id = f"pg-lock-chain-{b['pid']}-{b['backend_start_us']}-{b['occurrence_us']}"
        return self._base_event(LOCK_CHAINS, event_id, {"sessions": [b], **chain})

    def _bloat_event(self, table: dict[str, Any]) -> SystemEvent:
        event_id = f"pg-bloat-{table['relid']}-{table['vacuums']}"
        return self._base_event(BLOAT, event_id, {"tables": [table]})

    def _connections_event(self, usage: dict[str, Any], idle: list[dict[str, Any]]) -> SystemEvent:
        keys = ",".join(_token(x) for x in idle) or f"none-{int(time.time() // 3600)}"
        digest = hashlib.sha256(keys.encode()).hexdigest()[:16]
        return self._base_event(CONNECTIONS, f"pg-connections-{digest}", {"usage": usage, "sessions": idle})

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.METRIC_THRESHOLD]

    def _check_of(self, event: SystemEvent) -> str | None:
        """The check an event is about: ours carry it; an outside alert names it by its labels."""
        check = event.data.get("check")
        if event.data.get("detector") == "postgres" and check in CHECKS:
            return str(check)
        labels = event.data.get("labels")
        if not isinstance(labels, dict):
            return None
        s = self.settings
        if s.instance is not None and labels.get("instance") != s.instance:
            return None
        if labels.get("aiops_check") in CHECKS:
            return str(labels["aiops_check"])
        named = s.alert_names.get(str(labels.get("alertname", "")))
        return named if named in CHECKS else None

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.data.get("status") == "resolved":
            return None
        check = self._check_of(event)
        if check is None or check not in self.settings.checks:
            return None
        own = event.data.get("detector") == "postgres"
        sessions = [x for x in event.data.get("sessions") or [] if isinstance(x, dict)] if own else []
        tables = [x for x in event.data.get("tables") or [] if isinstance(x, dict)] if own else []
        if own and check == CONNECTIONS and not sessions:
            return None  # saturated, but no idle session to free: nothing this agent may do
        operation = self._operation(check)
        if check == BLOAT:
            what = ", ".join(t["table"] for t in tables) or "bloated tables"
            description = f"VACUUM {what} on {self.settings.where()}"
            targets = [t["table"] for t in tables] or [self.settings.where()]
        else:
            pids = ", ".join(str(x["pid"]) for x in sessions) or f"the {check.replace('_', ' ')} sessions"
            description = f"{operation} backend {pids} ({check.replace('_', ' ')}) on {self.settings.where()}"
            targets = [f"pid {x['pid']}" for x in sessions] or [self.settings.where()]
        return AgentAction(
            id=f"pg-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.RUN_COMMAND,
            description=description,
            target_resources=targets,
            risk_level=self.settings.risk[check],
            estimated_impact={
                LONG_QUERIES: "the running statement is cancelled; the client gets an error",
                IDLE_IN_TRANSACTION: "the session is closed and its open transaction rolled back",
                LOCK_CHAINS: "the blocking session is closed and its transaction rolled back",
                BLOAT: "VACUUM reads the table and frees dead tuples; no exclusive lock",
                CONNECTIONS: "idle client connections are closed",
            }[check],
            parameters={
                "check": check,
                "operation": operation,
                "sessions": sessions,
                "tables": tables,
                "waiting_pids": list(event.data.get("waiting_pids") or []) if own else [],
            },
        )

    def _operation(self, check: str) -> str:
        if check == BLOAT:
            return "vacuum"
        if check == LONG_QUERIES and self.settings.long_query_action == "cancel":
            return "cancel"
        return "terminate"

    # ----- plan ------------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        check = str(action.parameters.get("check"))
        if check not in CHECKS:
            raise NonRetryableActionError(f"unknown postgres check {check!r} in the action")
        conn = await self._connect()
        try:
            if check == BLOAT:
                return await self._plan_vacuum(conn, action)
            return await self._plan_sessions(conn, action, check)
        finally:
            await conn.close()

    async def _current_targets(self, conn: Any, action: AgentAction, check: str) -> list[dict[str, Any]]:
        """The sessions the action would hit now: its pinned ones that still match, or (from an
        outside alert) whatever the check finds now."""
        pinned = action.parameters.get("sessions") or []
        if not pinned:
            if check == LOCK_CHAINS:
                return [chain["blocker"] | {"waiting_pids": chain["waiting_pids"]} for chain in
                        await self._lock_chains(conn)]  # fmt: skip
            return await self._offenders(conn, check)
        current = []
        for session in pinned:
            row = await self._matching_session(conn, check, session)
            if row is not None:
                current.append(_session_info(row, check))
        return current

    async def _matching_session(self, conn: Any, check: str, session: dict[str, Any]) -> Any:
        column, condition = OCCURRENCE[check]
        return await conn.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity a WHERE a.pid = $1"
            " AND (extract(epoch FROM a.backend_start) * 1000000)::bigint = $2"
            f" AND (extract(epoch FROM a.{column}) * 1000000)::bigint = $3 AND {condition}",
            int(session["pid"]),
            int(session["backend_start_us"]),
            int(session["occurrence_us"]),
        )

    async def _plan_sessions(self, conn: Any, action: AgentAction, check: str) -> Plan:
        operation = str(action.parameters.get("operation") or self._operation(check))
        function = "pg_cancel_backend" if operation == "cancel" else "pg_terminate_backend"
        targets = await self._current_targets(conn, action, check)
        gone = len(action.parameters.get("sessions") or []) - len(targets)
        changes = [f"SELECT {function}({x['pid']});  -- {_token(x)} {_describe(x)}" for x in targets]
        lines = [f"-- PostgreSQL {self.settings.where()}: {check.replace('_', ' ')}"]
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
        summary = f"{function} on {len(targets)} session(s) at {self.settings.where()} ({check})"
        return Plan(summary=summary, details="\n".join(lines), changes=changes)

    async def _plan_vacuum(self, conn: Any, action: AgentAction) -> Plan:
        tables = await self._vacuum_targets(conn, action)
        verb = "VACUUM (ANALYZE)" if self.settings.vacuum_analyze else "VACUUM"
        changes = []
        for t in tables:
            ratio = t["dead_tuples"] / max(t["live_tuples"], 1)
            changes.append(
                f"{verb} {t['qualified']};  -- [table {t['relid']}@{t['vacuums']}] "
                f"dead={t['dead_tuples']} live={t['live_tuples']} ratio={ratio:.2f} "
                f"size={t['bytes'] // 1024}kB last_vacuum={t['last_vacuum'] or 'never'}"
            )
        details = "\n".join(
            [
                f"-- PostgreSQL {self.settings.where()}: table bloat",
                *(changes or ["-- no bloated table"]),
                "-- skipped if the table was vacuumed since (its vacuum count moved on)",
            ]
        )
        return Plan(summary=f"{verb} {len(tables)} table(s) at {self.settings.where()}", details=details,
                    changes=changes)  # fmt: skip

    async def _vacuum_targets(self, conn: Any, action: AgentAction) -> list[dict[str, Any]]:
        pinned = action.parameters.get("tables") or []
        found = (
            [t for p in pinned for t in await self._bloated(conn, int(p["relid"]))]
            if pinned
            else await self._bloated(conn)
        )
        for t in found:
            t["qualified"] = await conn.fetchval(
                "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables WHERE relid = $1",
                t["relid"],
            )
        return found

    # ----- execute ---------------------------------------------------------------------------

    @staticmethod
    def _approved_changes(action: AgentAction) -> list[str] | None:
        plan = action.parameters.get("approved_plan")
        if not isinstance(plan, dict):
            return None
        return [str(c) for c in plan.get("changes") or []]

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        check = str(action.parameters.get("check"))
        if check not in CHECKS:
            raise NonRetryableActionError(f"unknown postgres check {check!r} in the action")
        changes = self._approved_changes(action)
        if changes is None:
            raise NonRetryableActionError("no approved plan reached execute: refusing to act blind")
        if check == BLOAT:
            return await self._execute_vacuum(changes)
        return await self._execute_sessions(check, str(action.parameters.get("operation")), changes)

    async def _execute_sessions(self, check: str, operation: str, changes: list[str]) -> ActionResult:
        function = "pg_cancel_backend" if operation == "cancel" else "pg_terminate_backend"
        column, condition = OCCURRENCE[check]
        outcomes: dict[str, str] = {}
        conn = await self._connect()
        try:
            for line in changes:
                match = SESSION_TOKEN.search(line)
                if match is None:
                    continue
                pid, backend_us, occurrence_us = (int(g) for g in match.groups())
                # One statement: the session is signalled only if it is still the same occurrence.
                signalled = await conn.fetchval(
                    f"SELECT {function}(a.pid) FROM pg_stat_activity a WHERE a.pid = $1"
                    " AND (extract(epoch FROM a.backend_start) * 1000000)::bigint = $2"
                    f" AND (extract(epoch FROM a.{column}) * 1000000)::bigint = $3 AND {condition}",
                    pid,
                    backend_us,
                    occurrence_us,
                )
                outcomes[str(pid)] = (
                    "signalled" if signalled else "already gone (ended, or no longer the same occurrence)"
                )
        finally:
            await conn.close()
        done = sum(1 for v in outcomes.values() if v == "signalled")
        return ActionResult(
            success=True,
            message=f"{function}: {done} session(s) signalled, {len(outcomes) - done} already gone",
            data={"function": function, "sessions": outcomes, "check": check},
        )

    async def _execute_vacuum(self, changes: list[str]) -> ActionResult:
        verb = "VACUUM (ANALYZE)" if self.settings.vacuum_analyze else "VACUUM"
        outcomes: dict[str, str] = {}
        conn = await self._connect(statement_timeout=self.settings.n("vacuum_timeout_seconds"))
        try:
            for line in changes:
                match = TABLE_TOKEN.search(line)
                if match is None:
                    continue
                relid, vacuums = int(match.group(1)), int(match.group(2))
                row = await conn.fetchrow(
                    "SELECT format('%I.%I', schemaname, relname) AS name,"
                    " vacuum_count + autovacuum_count AS vacuums FROM pg_stat_user_tables WHERE relid = $1",
                    relid,
                )
                if row is None:
                    outcomes[str(relid)] = "table no longer exists"
                elif int(row["vacuums"]) > vacuums:
                    outcomes[row["name"]] = "already vacuumed since the plan"
                else:
                    await conn.execute(f"{verb} {row['name']}")
                    outcomes[row["name"]] = "vacuumed"
        finally:
            await conn.close()
        return ActionResult(
            success=True,
            message="; ".join(f"{k}: {v}" for k, v in outcomes.items()) or "no table to vacuum",
            data={"tables": outcomes},
        )

    # ----- verify ----------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        check = str(action.parameters.get("check"))
        changes = self._approved_changes(action) or []
        deadline = time.monotonic() + self.settings.n("verify_timeout_seconds")
        while True:
            if await self._fixed(check, changes):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)

    async def _fixed(self, check: str, changes: list[str]) -> bool:
        conn = await self._connect()
        try:
            if check == BLOAT:
                for line in changes:
                    match = TABLE_TOKEN.search(line)
                    if match is None:
                        continue
                    still = await self._bloated(conn, int(match.group(1)))
                    s = self.settings
                    for t in still:
                        if t["dead_tuples"] >= s.n("min_dead_tuples") and t["dead_tuples"] > s.n(
                            "dead_tuple_ratio"
                        ) * max(t["live_tuples"], 1):
                            return False
                return True
            for line in changes:
                match = SESSION_TOKEN.search(line)
                if match is None:
                    continue
                pid, backend_us, occurrence_us = (int(g) for g in match.groups())
                session = {"pid": pid, "backend_start_us": backend_us, "occurrence_us": occurrence_us}
                if await self._matching_session(conn, check, session) is not None:
                    return False
            return True
        finally:
            await conn.close()

    # ----- health and config -------------------------------------------------------------------

    async def _initialize_agent_specific(self) -> None:
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            raise AgentError("the postgres agent needs asyncpg: pip install asyncpg") from None

    async def _health_check_specific(self) -> dict[str, bool]:
        try:
            conn = await self._connect()
        except AgentError:
            return {"postgres reachable": False}
        try:
            may_signal = await conn.fetchval(
                "SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
                " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            )
            return {
                "postgres reachable": True,
                "may signal backends": bool(may_signal),
            }
        finally:
            await conn.close()

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return validate_settings(config)
