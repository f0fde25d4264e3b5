"""The console's cookies: a session that names the signed-in person, and a short-lived sign-in flow.

Both are JSON signed with HMAC-SHA256 under the console's key (``console.secret_env``) and carry
their own expiry, so the server keeps no session table and a cookie cannot be forged, altered or
kept past its time. The session cookie is ``HttpOnly``, ``SameSite=Strict`` and ``Secure``
(except on a loopback ``http://`` address, which browsers treat as a secure context), named
``__Host-`` when it is Secure so no subdomain can set it. The flow cookie (the OIDC state, nonce
and PKCE verifier, or a passkey sign-in challenge) is ``SameSite=Lax``: it must come back on the
identity provider's redirect, a cross-site navigation. The sign-in form's cookie (the random
value the API token form must echo) is ``SameSite=Lax`` too: a cross-site page cannot post a
token of its own choosing into someone's browser (login CSRF), as it is not sent on a cross-site
POST.

Each session holds a random CSRF token; every POST form carries it as ``csrf`` and every script
call sends it as ``X-CSRF-Token``, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from aiops.api.auth import Principal
from aiops.contracts.errors import AiopsError

log = logging.getLogger("aiops.console")

MAX_COOKIE = 4096
FLOW_SECONDS = 600
CSRF_HEADER = "x-csrf-token"


class SessionRefused(AiopsError):
    """A cookie or CSRF token that cannot be used; the message says why."""


class Session(BaseModel):
    """The signed-in person and their roles, how they signed in, and the session's CSRF token."""

    principal: Principal
    csrf: str = Field(min_length=16, max_length=100)
    expires: float


def loopback(public_url: str) -> bool:
    """Whether the console is served on a loopback ``http://`` address (a secure context to
    browsers, where a ``Secure`` cookie would not be set over plain HTTP)."""
    parts = urlsplit(public_url)
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Sign and check the console's cookies with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise SessionRefused("the console's cookie key must be 32 bytes or more")
        self.key = key

    @classmethod
    def from_env(cls, name: str) -> Signer:
        value = os.environ.get(name, "")
        if value:
            return cls(value.encode())
        log.warning("%s is not set: console sessions use a random key and end when the process does", name)
        return cls(secrets.token_bytes(32))

    def _mac(self, kind: str, body: str) -> str:
        return _b64(hmac.new(self.key, f"{kind}.{body}".encode(), hashlib.sha256).digest())

    def dump(self, kind: str, data: dict[str, Any]) -> str:
        body = _b64(json.dumps(data, separators=(",", ":")).encode())
        return f"{body}.{self._mac(kind, body)}"

    def load(self, kind: str, cookie: str) -> dict[str, Any]:
        """The cookie's data; ``SessionRefused`` if it is altered, not of ``kind``, or expired."""
        if len(cookie) > MAX_COOKIE:
            raise SessionRefused(f"the {kind} cookie is over {MAX_COOKIE} characters")
        body, _, mac = cookie.partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(kind, body).encode()):
            raise SessionRefused(f"the {kind} cookie is not signed by this console (altered or stale)")
        try:
            data = json.loads(_unb64(body))
        except (ValueError, TypeError):
            raise SessionRefused(f"the {kind} cookie is not readable") from None
        if not isinstance(data, dict) or not isinstance(data.get("expires"), int | float):
            raise SessionRefused(f"the {kind} cookie is not readable")
        if data["expires"] < time.time():
            raise SessionRefused(f"the {kind} has expired; sign in again")
        return data

    def session(self, cookie: str) -> Session:
        try:
            return Session.model_validate(self.load("session", cookie))
        except ValidationError:
            raise SessionRefused("the session cookie is not readable") from None


def new_session(principal: Principal, hours: float, until: float | None = None) -> Session:
    """A session of ``hours``, ending sooner at ``until`` (a signed-in API token's own expiry)."""
    expires = time.time() + hours * 3600
    if until is not None:
        expires = min(expires, until)
    return Session(principal=principal, csrf=secrets.token_urlsafe(24), expires=expires)


def csrf_matches(session: Session, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(session.csrf.encode(), str(offered).encode())


class CookieNames:
    """The cookie names and attributes for one public URL."""

    def __init__(self, public_url: str) -> None:
        self.secure = not loopback(public_url)
        self.session = "__Host-aiops-session" if self.secure else "aiops-session"
        self.flow = "__Host-aiops-signin" if self.secure else "aiops-signin"
        # The sign-in page's own token form: its anti-CSRF value, apart from the flow cookie so
        # that starting (and abandoning) a passkey or identity provider sign-in leaves it usable.
        self.form = "__Host-aiops-signin-form" if self.secure else "aiops-signin-form"

    def attributes(self, same_site: str, max_age: int | None) -> dict[str, Any]:
        return {
            "httponly": True,
            "secure": self.secure,
            "samesite": same_site,
            "path": "/",
            "max_age": max_age,
        }
