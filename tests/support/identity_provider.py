"""A stand-in OIDC identity provider for tests: an ES256 key pair, its JWKS (what a config pins as
``approval.issuers[].jwks``) and tokens with the binding claims the workflows check."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from aiops.contracts.config import TrustedIssuer

ISSUER = "https://login.example.test"
KID = "idp-1"
KEY = ec.generate_private_key(ec.SECP256R1())
GROUP_ROLES = {"sre-team": ["sre"], "ops": ["operator"]}


def jwks() -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "ES256"}]}


def trusted_issuer() -> TrustedIssuer:
    return TrustedIssuer(issuer=ISSUER, jwks=jwks(), group_roles=GROUP_ROLES)


def token(
    subject: str,
    groups: list[str],
    aud: str,
    verb: str,
    digest: str | None,
    key: Any = KEY,
    issuer: str = ISSUER,
    now: datetime | None = None,
) -> str:
    """A token as the provider would issue it for one decision or command (``aud``: the workflow id)."""
    issued = int((now or datetime.now(UTC)).timestamp())
    claims = {
        "iss": issuer, "sub": subject, "groups": groups, "aud": aud, "verb": verb, "digest": digest,
        "iat": issued, "exp": issued + 600, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})
