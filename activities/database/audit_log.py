"""The audit log: append-only rows in PostgreSQL, hash-chained per agent.

Each row's hash covers the previous row's hash and the row's own content, so
altering a row breaks its hash and removing one breaks the next row's link;
``verify`` names the first broken link. Appends are idempotent by key (a
retried activity writes once) and serialized per agent by an advisory lock,
so several workers can write one agent's chain.

The detail's hash input is PostgreSQL's own text rendering of the stored
``jsonb``, so what is verified is exactly what is stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, TypedDict

import asyncpg
from pydantic import BaseModel

from aiops.contracts.activities import AuditRecord

GENESIS = "0" * 64


class AuditRow(BaseModel):
    seq: int
    agent_id: str
    action_id: str | None
    step: str
    key: str
    actor: str
    detail: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime
    prev_hash: str
    row_hash: str


def _row_fields(r: asyncpg.Record) -> dict[str, Any]:
    """An ``AuditRow``'s fields from a row selected with the audit_log columns (``detail::text``):
    the one mapping from column names to fields, shared by ``rows`` and ``rows_after``."""
    return {
        "seq": r["seq"],
        "agent_id": r["agent_id"],
        "action_id": r["action_id"],
        "step": r["step"],
        "key": r["idempotency_key"],
        "actor": r["actor"],
        "detail": json.loads(r["detail"]),
        "occurred_at": r["occurred_at"],
        "recorded_at": r["recorded_at"],
        "prev_hash": r["prev_hash"],
        "row_hash": r["row_hash"],
    }


class AuditQuery(TypedDict, total=False):
    """Which rows ``AuditLog.rows`` reads (its defaults apply to what is left out): declared once,
    so the client's ``audit.rows`` takes exactly these and passes them on."""

    agent_id: str | None
    action_id: str | None
    since: datetime | None
    until: datetime | None
    limit: int
    newest_first: bool


class ChainReport(BaseModel):
    agent_id: str
    rows_checked: int
    ok: bool
    broken_at_seq: int | None = None
    problem: str | None = None


def chain_hash(
    prev_hash: str,
    agent_id: str,
    action_id: str | None,
    step: str,
    key: str,
    actor: str,
    detail_text: str,
    occurred_at: datetime,
) -> str:
    body = json.dumps(
        [
            prev_hash,
            agent_id,
            action_id,
            step,
            key,
            actor,
            detail_text,
            occurred_at.astimezone(UTC).isoformat(),
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _lock_key(agent_id: str) -> str:
    return f"aiops-audit:{agent_id}"


def _storable(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: a NUL in an event (hostile or broken) must
    not make an audit batch fail for ever and block the agent's outbox, so it is replaced."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


class AuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(self, records: list[AuditRecord]) -> int:
        """Write the records not yet written; return how many were new."""
        written = 0
        by_agent: dict[str, list[AuditRecord]] = {}
        for raw in records:
            record = raw.model_copy(
                update={
                    field: _storable(getattr(raw, field))
                    for field in ("agent_id", "action_id", "key", "actor", "detail")
                }
            )
            by_agent.setdefault(record.agent_id, []).append(record)
        async with self.pool.acquire() as conn:
            for agent_id, group in by_agent.items():
                async with conn.transaction():
                    written += await self._append_chain(conn, agent_id, group)
        return written

    async def _append_chain(self, conn: asyncpg.Connection, agent_id: str, records: list[AuditRecord]) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _lock_key(agent_id))
        keys = [r.key for r in records]
        existing = {
            row["idempotency_key"]
            for row in await conn.fetch(
                "SELECT idempotency_key FROM audit_log WHERE idempotency_key = ANY($1::text[])", keys
            )
        }
        fresh: dict[str, AuditRecord] = {}
        for r in records:
            if r.key not in existing:
                fresh.setdefault(r.key, r)
        if not fresh:
            return 0
        rendered = await conn.fetch(
            "SELECT d::jsonb::text AS text FROM unnest($1::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n",
            [json.dumps(r.detail, default=str) for r in fresh.values()],
        )
        prev = await conn.fetchval(
            "SELECT row_hash FROM audit_log WHERE agent_id = $1 ORDER BY seq DESC LIMIT 1", agent_id
        )
        prev = prev or GENESIS
        for record, detail in zip(fresh.values(), rendered, strict=True):
            actor = record.actor or ""
            row_hash = chain_hash(
                prev, agent_id, record.action_id, record.step.value, record.key, actor,
                detail["text"], record.occurred_at,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO audit_log (agent_id, action_id, step, idempotency_key, actor, detail,"
                " occurred_at, prev_hash, row_hash) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)",
                agent_id,
                record.action_id,
                record.step.value,
                record.key,
                actor,
                detail["text"],
                record.occurred_at,
                prev,
                row_hash,
            )
            prev = row_hash
        return len(fresh)

    async def rows(
        self,
        agent_id: str | None = None,
        action_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        """Rows filtered by agent, action and ``occurred_at`` range, in chain order."""
        order = "DESC" if newest_first else "ASC"
        found = await self.pool.fetch(
            "SELECT seq, agent_id, action_id, step, idempotency_key, actor, detail::text AS detail,"
            " occurred_at, recorded_at, prev_hash, row_hash FROM audit_log"
            " WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR action_id = $2)"
            " AND ($3::timestamptz IS NULL OR occurred_at >= $3)"
            " AND ($4::timestamptz IS NULL OR occurred_at < $4)"
            f" ORDER BY seq {order} LIMIT $5",
            agent_id,
            action_id,
            since,
            until,
            limit,
        )
        return [AuditRow(**_row_fields(r)) for r in found]

    async def agents(self) -> list[str]:
        return [
            r["agent_id"] for r in await self.pool.fetch("SELECT DISTINCT agent_id FROM audit_log ORDER BY 1")
        ]

    async def verify(self, agent_id: str) -> ChainReport:
        """Walk the agent's chain; report the first row altered, removed or out of place.

        A removed last row leaves no broken link behind; compare the row count with
        what you expect (``aiops audit verify`` prints it) to notice a truncated tail.
        """
        checked = 0
        expected_prev = GENESIS
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = conn.cursor(
                "SELECT seq, action_id, step, idempotency_key, actor, detail::text AS detail, occurred_at,"
                " prev_hash, row_hash FROM audit_log WHERE agent_id = $1 ORDER BY seq",
                agent_id,
            )
            async for r in cursor:
                checked += 1
                if r["prev_hash"] != expected_prev:
                    return ChainReport(
                        agent_id=agent_id,
                        rows_checked=checked,
                        ok=False,
                        broken_at_seq=r["seq"],
                        problem=f"row {r['seq']} does not link to the row before it: "
                        "a row was removed or inserted out of band",
                    )
                computed = chain_hash(
                    r["prev_hash"], agent_id, r["action_id"], r["step"], r["idempotency_key"], r["actor"],
                    r["detail"], r["occurred_at"],
                )  # fmt: skip
                if computed != r["row_hash"]:
                    return ChainReport(
                        agent_id=agent_id,
                        rows_checked=checked,
                        ok=False,
                        broken_at_seq=r["seq"],
                        problem=f"row {r['seq']} was altered: its content no longer matches its hash",
                    )
                expected_prev = r["row_hash"]
        return ChainReport(agent_id=agent_id, rows_checked=checked, ok=True)


class ChainRow(AuditRow):
    """An audit row with ``detail_text``: PostgreSQL's rendering of the stored ``jsonb``, the exact
    text its hash covers. An export carries it so a copy can be verified without the database
    (re-rendering ``detail`` would not do: ``jsonb`` keeps ``1.50`` and orders keys its own way)."""

    detail_text: str


class AuditPosition(BaseModel):
    """How far a reader of the audit log has got: the last ``seq`` it has taken of each agent.

    Per agent, not one global ``seq``: ``seq`` comes from a sequence, so two agents' concurrent
    appends can commit out of ``seq`` order and a global "after seq N" would skip the row that
    commits late. One agent's appends are serialized by its advisory lock (taken before ``seq`` is
    drawn, held until commit), so within an agent rows become visible in ``seq`` order and "after
    my last seq of this agent" misses nothing and repeats nothing.
    """

    agents: dict[str, int] = {}

    def after(self, rows: list[ChainRow]) -> AuditPosition:
        """The position once ``rows`` (in ``seq`` order) have been taken."""
        agents = dict(self.agents)
        for row in rows:
            agents[row.agent_id] = max(agents.get(row.agent_id, 0), row.seq)
        return AuditPosition(agents=agents)


# Every agent in the log without reading every row: a loose index scan on (agent_id, seq); then,
# per agent, its rows after the reader's position on the same index; merged by seq.
_ROWS_AFTER = """
WITH RECURSIVE agents(agent_id) AS (
    (SELECT agent_id FROM audit_log WHERE ($1::text IS NULL OR agent_id = $1) ORDER BY agent_id LIMIT 1)
    UNION ALL
    SELECT (SELECT l.agent_id FROM audit_log l WHERE l.agent_id > a.agent_id
            AND ($1::text IS NULL OR l.agent_id = $1) ORDER BY l.agent_id LIMIT 1)
    FROM agents a WHERE a.agent_id IS NOT NULL
)
SELECT r.* FROM agents a
LEFT JOIN unnest($2::text[], $3::bigint[]) AS p(agent_id, last_seq) ON p.agent_id = a.agent_id
CROSS JOIN LATERAL (
    SELECT l.seq, l.agent_id, l.action_id, l.step, l.idempotency_key, l.actor, l.detail::text AS detail,
           l.occurred_at, l.recorded_at, l.prev_hash, l.row_hash
    FROM audit_log l
    WHERE l.agent_id = a.agent_id AND l.seq > coalesce(p.last_seq, 0)
      AND ($4::text IS NULL OR l.action_id = $4)
      AND ($5::timestamptz IS NULL OR l.occurred_at >= $5)
      AND ($6::timestamptz IS NULL OR l.occurred_at < $6)
    ORDER BY l.seq LIMIT $7
) r
WHERE a.agent_id IS NOT NULL
ORDER BY r.seq LIMIT $7
"""


async def rows_after(
    pool: asyncpg.Pool,
    position: AuditPosition,
    limit: int,
    agent_id: str | None = None,
    action_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ChainRow]:
    """The next at most ``limit`` rows after ``position``, in ``seq`` order, with their hash-chain
    fields: one page of a keyset walk (bounded memory however long the log), and the one read a
    tailer repeats (``position.after(rows)`` is where the next call starts). Filters narrow the
    rows; the position stays exact because it is kept per agent (see ``AuditPosition``)."""
    agents = list(position.agents)
    found = await pool.fetch(
        _ROWS_AFTER,
        agent_id,
        agents,
        [position.agents[a] for a in agents],
        action_id,
        since,
        until,
        limit,
    )
    return [ChainRow(**_row_fields(r), detail_text=r["detail"]) for r in found]
