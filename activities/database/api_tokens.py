"""The REST API's personal tokens and its record of refused calls, in PostgreSQL.

A personal token is ``aiops_pat_<id>_<secret>``: 32 random bytes (``secrets.token_urlsafe``)
after a short public id. Only the SHA-256 of the whole text is stored, so the table proves a
token without being able to hand one out; the id is what ``aiops api-token list`` shows and
``revoke`` takes. A token carries its owner (the person every call names), its roles (its
scope), an expiry it cannot outlive, and a revocation time once revoked.

Refusals (401, 403) go to ``api_refusals``, a table of their own rather than an agent's audit
chain: a refused caller names no agent, and a flood of refusals must not interleave with (or
lock) an agent's hash chain.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from aiops.contracts.errors import AiopsError

PREFIX = "aiops_pat_"
TOKEN_PATTERN = re.compile(r"^aiops_pat_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
MAX_REFUSAL_TEXT = 500


class ApiTokenError(AiopsError):
    """A token operation that cannot be done; the message says why."""


class ApiToken(BaseModel):
    """A stored token, as listed: never its text, which only its creator ever sees."""

    id: str
    owner: str
    roles: list[str]
    comment: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


class ApiRefusal(BaseModel):
    seq: int
    at: datetime
    who: str
    method: str
    path: str
    status: int
    reason: str
    remote: str


def token_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def new_token_text() -> tuple[str, str]:
    """``(id, text)`` of a fresh token: 6 random bytes of id, 32 of secret."""
    token_id = secrets.token_hex(6)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


class ApiTokens:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, owner: str, roles: list[str], expires_at: datetime, comment: str = ""
    ) -> tuple[ApiToken, str]:
        """Store a new token; return it and its text (shown once, never stored)."""
        if not owner.strip() or len(owner) > 200:
            raise ApiTokenError("the owner must be a name of 1 to 200 characters")
        if not roles:
            raise ApiTokenError("a token needs at least one role (its scope)")
        token_id, text = new_token_text()
        row = await self.pool.fetchrow(
            "INSERT INTO api_tokens (id, owner, roles, token_hash, comment, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            token_id,
            owner,
            sorted(set(roles)),
            token_hash(text),
            comment[:500],
            expires_at,
        )
        return _token(row), text

    async def find(self, text: str) -> ApiToken | None:
        """The stored token this text proves (revoked or expired ones too: the caller says which)."""
        if not TOKEN_PATTERN.match(text):
            return None
        row = await self.pool.fetchrow("SELECT * FROM api_tokens WHERE token_hash = $1", token_hash(text))
        return None if row is None else _token(row)

    async def get(self, token_id: str) -> ApiToken | None:
        """The stored token with this id (a console session signed in with it checks it is still
        usable on every request)."""
        row = await self.pool.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token_id[:40])
        return None if row is None else _token(row)

    async def listed(self, owner: str | None = None) -> list[ApiToken]:
        rows = await self.pool.fetch(
            "SELECT * FROM api_tokens WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id", owner
        )
        return [_token(r) for r in rows]

    async def revoke(self, token_id: str) -> ApiToken:
        """Revoke (once; revoking again keeps the first time); unknown ids are an error."""
        row = await self.pool.fetchrow(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *",
            token_id,
        )
        if row is None:
            raise ApiTokenError(f"no API token {token_id[:40]!r}; see `aiops api-token list`")
        return _token(row)

    async def refused(self, who: str, method: str, path: str, status: int, reason: str, remote: str) -> None:
        await self.pool.execute(
            "INSERT INTO api_refusals (who, method, path, status, reason, remote)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            who[:200],
            method[:16],
            path[:MAX_REFUSAL_TEXT],
            status,
            reason[:MAX_REFUSAL_TEXT],
            remote[:100],
        )

    async def refusals(self, limit: int = 100) -> list[ApiRefusal]:
        rows = await self.pool.fetch("SELECT * FROM api_refusals ORDER BY seq DESC LIMIT $1", limit)
        return [ApiRefusal(**dict(r)) for r in rows]


def _token(row: asyncpg.Record) -> ApiToken:
    values = dict(row)
    values.pop("token_hash", None)
    values["roles"] = list(values["roles"])
    return ApiToken(**values)
