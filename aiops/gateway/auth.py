"""Who may send: a bearer token or an HMAC-SHA256 signature of the raw body, per source.

Bearer suits Alertmanager (``webhook_configs[].http_config.authorization``);
HMAC suits webhooks that sign their body (``X-Aiops-Signature: sha256=<hex>``,
GitHub's scheme). Both compare in constant time. A replayed signed body is
harmless: the same events carry the same ids, which the agent drops.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from aiops.gateway.config import Auth

SIGNATURE_HEADER = "x-aiops-signature"


def sign(secret: bytes, body: bytes) -> str:
    """The header value a sender puts in ``X-Aiops-Signature``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check(auth: Auth, secret: bytes | None, headers: Mapping[str, str], body: bytes) -> str | None:
    """None when the request proves it comes from the source; else the one-line reason."""
    if auth.type == "none":
        return None
    assert secret is not None
    if auth.type == "bearer":
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if not given:
            return "missing Authorization: Bearer <token>"
        if scheme.lower() != "bearer" or not token:
            return "the Authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(token.strip().encode(), secret):
            return "bad bearer token"
        return None
    given = headers.get(SIGNATURE_HEADER, "")
    if not given:
        return "missing X-Aiops-Signature: sha256=<hex HMAC-SHA256 of the body>"
    if not given.startswith("sha256="):
        return "X-Aiops-Signature must be sha256=<hex>"
    if not hmac.compare_digest(given.strip().lower().encode(), sign(secret, body).encode()):
        return "bad signature: X-Aiops-Signature is not the HMAC-SHA256 of this body"
    return None
