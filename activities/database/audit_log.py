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
from typing import Any

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
        return [
            AuditRow(
                seq=r["seq"],
                agent_id=r["agent_id"],
                action_id=r["action_id"],
                step=r["step"],
                key=r["idempotency_key"],
                actor=r["actor"],
                detail=json.loads(r["detail"]),
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                prev_hash=r["prev_hash"],
                row_hash=r["row_hash"],
            )
            for r in found
        ]

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
