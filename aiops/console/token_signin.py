"""Sign-in with a personal API token: the person pastes the token ``aiops api-token create`` printed.

Why a third way in: a console without an identity provider (the demo's, a small team's, an
air-gapped one) still needs people to sign in by name and with their roles, and a personal API
token already proves exactly that: stored as its SHA-256 only, with an owner, roles (its
scope), an expiry and a revocation time (``activities/database/api_tokens.py``).

The session names the token's owner with the token's roles and its id (``via: token``). It ends
after ``console.session_hours`` or at the token's own expiry, whichever comes first, and the token
is read again from PostgreSQL on **every request** the session makes (pages and ``/v1`` calls):
once it is revoked or expired, the next request is refused (401, written to ``api_refusals``) and
the person is sent back to sign in. A database that cannot be asked refuses the request (503):
a session is never trusted on a check that did not happen.

The form is a plain POST (no script needed). Before a session there is no session CSRF token, so
the sign-in page sets its own signed, ``SameSite=Lax`` cookie holding a random value the form
echoes: a cross-site page cannot post a token of its choosing into someone's browser (login
CSRF), since the cookie does not come with a cross-site POST.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import asyncpg

from activities.database.api_tokens import TOKEN_PATTERN, ApiTokens
from aiops.api.auth import Principal, Unauthenticated, usable
from aiops.contracts.errors import AiopsError

from .session import FLOW_SECONDS, Session, SessionRefused

FORM_KIND = "sign-in form"
MAX_TOKEN = 200


class TokenSignInRefused(SessionRefused):
    """A pasted token, or a token session, that cannot (or can no longer) name anyone."""

    def __init__(self, who: str, reason: str) -> None:
        super().__init__(reason)
        self.who = who


class TokenUnchecked(AiopsError):
    """The token could not be checked (no database, or it failed): the request is refused, 503."""


def form_flow() -> dict[str, Any]:
    """The sign-in form's anti-CSRF value, kept in its signed cookie and echoed by the form."""
    return {"csrf": secrets.token_urlsafe(24), "expires": time.time() + FLOW_SECONDS}


def form_matches(flow: dict[str, Any], offered: object) -> bool:
    expected = str(flow.get("csrf", ""))
    return bool(expected) and isinstance(offered, str) and secrets.compare_digest(expected, offered)


async def sign_in(text: str, tokens: ApiTokens | None) -> tuple[Principal, float]:
    """The person a pasted token names and the token's expiry (a Unix time), or
    ``TokenSignInRefused`` saying why (unknown, revoked, expired, not a token at all)."""
    text = text.strip()
    if len(text) > MAX_TOKEN or not TOKEN_PATTERN.match(text):
        raise TokenSignInRefused(
            "",
            "that is not a personal API token: paste the aiops_pat_... text `aiops api-token create` printed",
        )
    if tokens is None:
        raise TokenUnchecked(
            "API token sign-in needs the database (DATABASE_URL), which this gateway has not"
        )
    try:
        stored = await tokens.find(text)
    except (asyncpg.PostgresError, OSError) as err:
        raise TokenUnchecked(f"cannot check the API token: {' '.join(str(err).split())[:200]}") from None
    if stored is None:
        raise TokenSignInRefused("", "unknown API token (mistyped, or from another installation)")
    try:
        return usable(stored), stored.expires_at.timestamp()
    except Unauthenticated as err:
        raise TokenSignInRefused(stored.owner, str(err)) from None


async def still_usable(session: Session, tokens: ApiTokens | None) -> None:
    """Refuse a token session whose token was revoked, expired or deleted since it signed in."""
    principal = session.principal
    if principal.via != "token":
        return
    if not principal.token_id:
        raise TokenSignInRefused(principal.name, "the session names no API token; sign in again")
    if tokens is None:
        raise TokenUnchecked(
            "API token sessions need the database (DATABASE_URL), which this gateway has not"
        )
    try:
        stored = await tokens.get(principal.token_id)
    except (asyncpg.PostgresError, OSError) as err:
        raise TokenUnchecked(
            f"cannot check the session's API token: {' '.join(str(err).split())[:200]}"
        ) from None
    if stored is None or stored.owner != principal.name:
        raise TokenSignInRefused(principal.name, f"the API token {principal.token_id} is gone; sign in again")
    try:
        usable(stored)
    except Unauthenticated as err:
        raise TokenSignInRefused(principal.name, f"{err}; sign in again") from None
