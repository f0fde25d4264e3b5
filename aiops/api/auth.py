"""Who calls: a bearer token proves a person, and their roles decide what they may do.

Two kinds of bearer token:

* a **JWT from an identity provider** whose key set is pinned in the gateway config
  (``api.issuers``: the same ``TrustedIssuer`` the approvals trust). PyJWT checks the
  signature with the pinned keys, only with the issuer's asymmetric algorithms (never HS* or
  none), and ``exp``, ``iss`` and ``aud`` (``api.audience``); the person is its ``name_claim``
  and their roles come from ``group_roles`` of its ``groups_claim``, as for approvals;
* a **personal API token** (``aiops api-token create``), stored as its SHA-256 only, with its
  owner, its roles (its scope), an expiry and a revocation time.

Roles are ordered: ``viewer`` < ``operator`` < ``sre`` < ``admin``; a role grants everything
the roles below it do. Deciding takes one of ``api.decide_roles`` (the workflow then checks the
signature and the approver's roles of the action's own config).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jwt

from activities.database.api_tokens import PREFIX, ApiToken, ApiTokens
from aiops.api.models import Me
from aiops.contracts.config import TrustedIssuer, UntrustedSigning
from aiops.contracts.errors import AiopsError
from aiops.gateway.config import Api

LADDER = ("viewer", "operator", "sre", "admin")
CLOCK_SKEW_SECONDS = 60


Principal = Me
"""The person a call names (``/v1/me`` returns it as it is)."""


class Unauthenticated(AiopsError):
    """No usable bearer token: answered 401, audited."""


class Forbidden(AiopsError):
    """A known person without the role for this call: answered 403, audited."""


def has_role(principal: Principal, needed: str, decide_roles: list[str] | None = None) -> bool:
    """Whether ``principal`` may do what ``needed`` (a rung of ``LADDER``, or ``decide``) allows."""
    if needed == "decide":
        return bool(set(principal.roles) & set(decide_roles or []))
    rank = LADDER.index(needed)
    return any(r in LADDER and LADDER.index(r) >= rank for r in principal.roles)


def bearer(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; ``Unauthenticated`` otherwise."""
    if not header:
        raise Unauthenticated(
            "missing Authorization: Bearer <token> (an identity provider's JWT or an API token)"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    if len(token) > 16_384:
        raise Unauthenticated("the bearer token is over 16384 characters")
    return token


async def authenticate(header: str, settings: Api, tokens: ApiTokens | None) -> Principal:
    token = bearer(header)
    if token.startswith(PREFIX):
        return await _personal(token, tokens)
    return verify_jwt(token, settings.issuers, settings.audience, datetime.now(UTC))


async def _personal(token: str, tokens: ApiTokens | None) -> Principal:
    if tokens is None:
        raise Unauthenticated("API tokens need the database (DATABASE_URL), which this gateway has not")
    stored = await tokens.find(token)
    if stored is None:
        raise Unauthenticated("unknown API token")
    return usable(stored)


def usable(stored: ApiToken) -> Principal:
    """The person a stored token names, unless it is revoked or expired (``Unauthenticated``)."""
    if stored.revoked_at is not None:
        raise Unauthenticated(
            f"the API token {stored.id} of {stored.owner} was revoked at "
            f"{stored.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if stored.expires_at <= datetime.now(UTC):
        raise Unauthenticated(
            f"the API token {stored.id} of {stored.owner} expired at "
            f"{stored.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    return Principal(name=stored.owner, roles=stored.roles, via="token", token_id=stored.id)


def verify_jwt(token: str, issuers: list[TrustedIssuer], audience: str, now: datetime) -> Principal:
    """The person an identity provider's JWT names, checked against its pinned keys."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = json.loads(
            jwt.api_jws.decode_complete(token, options={"verify_signature": False})["payload"]
        )
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
        raise Unauthenticated("the bearer token is neither an API token nor a JWT") from None
    if not isinstance(unverified, dict):
        raise Unauthenticated("the bearer token is neither an API token nor a JWT")
    issuer = next((i for i in issuers if i.issuer == unverified.get("iss")), None)
    if issuer is None:
        trusted = ", ".join(sorted(i.issuer for i in issuers)) or "none"
        raise Unauthenticated(
            f"the JWT is issued by {str(unverified.get('iss'))[:120]!r}, which the API does not trust "
            f"(api.issuers: {trusted})"
        )
    try:
        algorithm, candidates = issuer.signing_keys(header, "the JWT")
    except UntrustedSigning as err:
        raise Unauthenticated(str(err)) from None
    claims = None
    problem = f"the JWT's signature does not match the pinned keys of {issuer.issuer} (forged or altered)"
    for candidate in candidates:
        try:
            claims = jwt.decode(
                token,
                key=candidate.key,
                algorithms=[str(algorithm)],
                audience=audience,
                issuer=issuer.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the JWT has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the JWT is not for this API (its aud must be {audience!r})") from None
        except jwt.InvalidTokenError as err:
            raise Unauthenticated(f"the JWT is not acceptable: {err}") from None
    if claims is None:
        raise Unauthenticated(problem)
    name = claims.get(issuer.name_claim)
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise Unauthenticated(f"the JWT's {issuer.name_claim!r} claim is not a name (1 to 200 characters)")
    roles = issuer.roles_of(claims.get(issuer.groups_claim, []))
    return Principal(name=name, roles=roles, via="oidc", issuer=issuer.issuer)
