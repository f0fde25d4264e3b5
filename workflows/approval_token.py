"""Signed approvals: who decided, proven by a token the workflow itself verifies.

A person approves (or rejects) with a compact JWS (a JWT) signed with their own
Ed25519 key, like an SSH key. Its claims bind it to one decision:

* ``sub``: the approver's name, as in ``approval.approvers`` of the action's config;
* ``aud``: the action's workflow id, so it cannot approve another action;
* ``verb``: ``approve`` or ``reject``;
* ``digest``: the plan digest the person reviewed (required to approve), so a
  changed plan is not approved by an old token;
* ``exp`` (and ``iat``): checked against ``workflow.now()``, never the wall clock;
  a token may live at most ``MAX_LIFETIME_SECONDS``;
* ``jti``: a unique id; a token is used once.

The public keys are the ones in the config the action was decided under (pinned
in the action's input), so a later config change cannot approve an old action
with a new key. Verification is pure computation (PyJWT's JWS signature check
through ``cryptography``, then the claims here), so it is deterministic and runs
in workflow code; ``sign`` is what the ``aiops`` CLI and SDK clients use.
"""

from __future__ import annotations

import base64
import json
import uuid  # not workflow code: sign() runs in clients, for a token id
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiops.contracts.config import AgentConfig, ApprovalSettings, TrustedIssuer, UntrustedSigning
from aiops.contracts.errors import AiopsError, describe_validation_error
from aiops.contracts.passkey import PasskeyError, is_passkey_envelope
from workflows.passkey import verify_passkey

KEY_PREFIX = "ed25519:"
ALGORITHM = "EdDSA"
MAX_LIFETIME_SECONDS = 24 * 3600
DEFAULT_LIFETIME_SECONDS = 15 * 60
# Clocks of signer and server differ a little: a token issued this far in the future is accepted.
CLOCK_SKEW_SECONDS = 120

Verb = Literal[
    "approve", "reject", "pause", "resume", "stop", "reset-circuit-breaker", "reconfigure", "upgrade"
]
# Verbs whose token names what it allows (a plan digest, a command's digest): approving a plan,
# stopping (draining or aborting), a config change. Rejecting, pausing, resuming and closing the
# breaker mean the same whatever the moment, so their tokens carry no digest.
DIGEST_BOUND: frozenset[str] = frozenset({"approve", "stop", "reconfigure"})
NOT_A_TOKEN = "the credential is not a signed token (a JWS from `aiops approvals token`)"


class TokenRefused(AiopsError):
    """A credential that does not prove this decision; the message says why, for the audit log."""


class ApprovalClaims(BaseModel):
    """What a token says. Unknown claims are ignored; the known ones are bounded."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    sub: str = Field(min_length=1, max_length=200)
    iss: str | None = Field(default=None, max_length=500)
    aud: str = Field(min_length=1, max_length=500)
    verb: Verb
    digest: str | None = Field(default=None, max_length=128)
    iat: int
    exp: int
    jti: str = Field(min_length=8, max_length=100)


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64url>``: the one-line form an approver's key takes in config."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The key of ``ed25519:<base64url>``; ``ValueError`` saying what is wrong otherwise."""
    if not text.startswith(KEY_PREFIX):
        raise ValueError(f"a public key starts with {KEY_PREFIX!r} (as `aiops keys generate` prints it)")
    body = text[len(KEY_PREFIX) :].strip()
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise ValueError("the public key is not base64url text") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def sign(
    key: Ed25519PrivateKey,
    approver: str,
    workflow_id: str,
    verb: Verb,
    digest: str | None,
    now: datetime,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    token_id: str | None = None,
) -> str:
    """A token for one decision on one action (what a client sends as ``credential``)."""
    issued = int(now.timestamp())
    claims = {
        "sub": approver,
        "aud": workflow_id,
        "verb": verb,
        "digest": digest,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": token_id or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": approver})


@dataclass(frozen=True)
class Expected:
    """What a credential must prove: ``verb`` on the workflow ``workflow_id`` (for ``digest``,
    where the verb is bound to one), valid at ``at`` (``workflow.now()``, the replayed clock), and
    with a token id not in ``used`` (those the workflow has accepted already)."""

    workflow_id: str
    verb: Verb
    digest: str | None
    at: datetime
    used: set[str]

    @property
    def moment(self) -> int:
        """``at`` in whole seconds, as a credential's ``iat`` and ``exp`` are."""
        return int(self.at.timestamp())

    def expired(self, exp: int) -> datetime | None:
        """When a credential valid until ``exp`` expired, if it has by ``at``; None otherwise."""
        return datetime.fromtimestamp(exp, tz=self.at.tzinfo) if exp <= self.moment else None


class Verified(BaseModel):
    """Who a verified token proves: ``name`` (an approver's, or mapped from an identity
    provider's claims), the roles the provider's groups give (None for a personal key: the
    approver's roles in config apply) and the ``issuer`` that vouched (None for a personal key)."""

    claims: ApprovalClaims
    name: str
    roles: list[str] | None = None
    issuer: str | None = None


def verify(
    token: str,
    keys: dict[str, str],
    workflow_id: str,
    verb: Verb,
    digest: str | None,
    now: datetime,
    used_token_ids: set[str],
) -> ApprovalClaims:
    """The claims of ``token`` if an approver's personal key proves ``verb`` on this workflow now."""
    return verify_identity(token, keys, [], workflow_id, verb, digest, now, used_token_ids).claims


def verify_identity(
    token: str,
    keys: dict[str, str],
    issuers: list[TrustedIssuer],
    workflow_id: str,
    verb: Verb,
    digest: str | None,
    now: datetime,
    used_token_ids: set[str],
    passkeys: ApprovalSettings | None = None,
) -> Verified:
    """Who ``token`` proves may ask ``verb`` of this workflow now; ``TokenRefused`` otherwise.

    A ``passkey:`` credential (a WebAuthn assertion, ``workflows/passkey.py``) is checked against
    the approvers' registered passkeys and relying party of ``passkeys`` (the pinned config's
    approval settings); where none are given (agent commands) passkeys are not accepted.

    ``keys`` maps approver names to their ``ed25519:`` public keys and ``issuers`` are the
    trusted identity providers, both from the config the workflow pins. A token with an ``iss``
    claim naming a trusted issuer is checked against that issuer's pinned JWKS; any other token
    against the personal key of its ``sub``. Only the signature is checked by PyJWT; every
    claim, and the time, are checked here against the workflow's own clock, so replaying this
    check gives the same answer.
    """
    expected = Expected(workflow_id, verb, digest, now, used_token_ids)
    if is_passkey_envelope(token):
        return _verified_by_passkey(token, passkeys, expected)
    try:
        header = jwt.get_unverified_header(token)
        unverified = json.loads(
            jwt.api_jws.decode_complete(token, options={"verify_signature": False})["payload"]
        )
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
        raise TokenRefused(NOT_A_TOKEN) from None
    if not isinstance(unverified, dict):
        raise TokenRefused(NOT_A_TOKEN)
    issuer_name = unverified.get("iss")
    if issuer_name is not None:
        issuer = next((i for i in issuers if i.issuer == issuer_name), None)
        if issuer is None:
            trusted = ", ".join(sorted(i.issuer for i in issuers)) or "none"
            raise TokenRefused(
                f"the token is issued by {str(issuer_name)[:120]!r}, which the config does not trust "
                f"(trusted issuers: {trusted})"
            )
        return _verified_by_issuer(token, header, issuer, expected)
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(
            f"the token is signed with {str(header.get('alg'))[:20]!r}; only {ALGORITHM} is accepted"
        )
    subject = unverified.get("sub")
    if not isinstance(subject, str) or subject not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise TokenRefused(
            f"the token is signed for {str(subject)[:80]!r}, who has no public key in the config this "
            f"workflow checks against (approvers with keys: {known})"
        )
    try:
        public = parse_public_key(keys[subject])
        signed = jwt.api_jws.decode_complete(token, key=public, algorithms=[ALGORITHM])
    except ValueError as err:
        raise TokenRefused(f"{subject}'s public key in the config is not usable: {err}") from None
    except jwt.InvalidTokenError:
        raise TokenRefused(
            f"the token's signature does not match {subject}'s public key (forged or altered)"
        ) from None
    claims = _claims(signed["payload"])
    return Verified(claims=_checked(claims, expected), name=claims.sub)


def _verified_by_passkey(credential: str, settings: ApprovalSettings | None, expected: Expected) -> Verified:
    if settings is None or expected.verb not in ("approve", "reject"):
        raise TokenRefused("a passkey signs decisions on actions only; sign this with a token")
    try:
        name, token_id, expires = verify_passkey(credential, settings, expected)
    except PasskeyError as err:
        raise TokenRefused(str(err)) from None
    claims = ApprovalClaims(
        sub=name,
        aud=expected.workflow_id,
        verb=expected.verb,
        digest=expected.digest,
        iat=expected.moment,
        exp=expires,
        jti=token_id,
    )
    return Verified(claims=claims, name=name)


def identity_roles(config: AgentConfig, who: Verified) -> list[str]:
    """A verified person's roles: the configured approver's of that name, plus (for a token from
    a trusted issuer) those its groups map to."""
    approver = config.approval.approver(who.name)
    roles = set(approver.roles if approver else [])
    roles.update(who.roles or [])
    return sorted(roles)


def _verified_by_issuer(
    token: str, header: dict[str, object], issuer: TrustedIssuer, expected: Expected
) -> Verified:
    try:
        algorithm, candidates = issuer.signing_keys(header, "the token")
    except UntrustedSigning as err:
        raise TokenRefused(str(err)) from None
    if not candidates:
        kid = header.get("kid")
        raise TokenRefused(
            f"the token names key {str(kid)[:60]!r}, not in the pinned key set of {issuer.issuer}"
        )
    payload = None
    for candidate in candidates:
        try:
            payload = jwt.api_jws.decode_complete(token, key=candidate.key, algorithms=[str(algorithm)])[
                "payload"
            ]
            break
        except jwt.InvalidTokenError:
            continue
    if payload is None:
        raise TokenRefused(
            f"the token's signature does not match the pinned keys of {issuer.issuer} (forged or altered)"
        )
    claims = _claims(payload)
    raw = json.loads(payload)
    name = raw.get(issuer.name_claim)
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise TokenRefused(f"the token's {issuer.name_claim!r} claim is not a name (1 to 200 characters)")
    roles = issuer.roles_of(raw.get(issuer.groups_claim, []))
    checked = _checked(claims, expected)
    return Verified(claims=checked, name=name, roles=roles, issuer=issuer.issuer)


def _claims(payload: bytes) -> ApprovalClaims:
    try:
        return ApprovalClaims.model_validate_json(payload)
    except ValidationError as err:
        raise TokenRefused(f"the token's claims are invalid: {describe_validation_error(err)}") from None


def _checked(claims: ApprovalClaims, expected: Expected) -> ApprovalClaims:
    workflow_id, verb, digest = expected.workflow_id, expected.verb, expected.digest
    if claims.aud != workflow_id:
        target = "this action" if verb in ("approve", "reject") else "this agent"
        raise TokenRefused(f"the token is for {claims.aud[:120]!r}, not for {target} ({workflow_id})")
    if claims.verb != verb:
        raise TokenRefused(f"the token is to {claims.verb}, not to {verb}")
    if verb == "approve" and claims.digest != digest:
        raise TokenRefused(
            f"the token approves plan {str(claims.digest)[:12]}, the current plan is {str(digest)[:12]}: "
            "review the current plan and sign again"
        )
    if verb in DIGEST_BOUND and verb != "approve" and claims.digest != digest:
        raise TokenRefused(
            f"the token allows a different {verb} (digest {str(claims.digest)[:12]}, this request's is "
            f"{str(digest)[:12]}): sign the request you send"
        )
    if (expired := expected.expired(claims.exp)) is not None:
        raise TokenRefused(f"the token expired at {expired:%Y-%m-%d %H:%M:%S} UTC; sign a new one")
    if claims.iat > expected.moment + CLOCK_SKEW_SECONDS:
        raise TokenRefused("the token is issued in the future; check the signer's clock")
    if claims.exp - claims.iat > MAX_LIFETIME_SECONDS:
        raise TokenRefused(
            f"the token lives {timedelta(seconds=claims.exp - claims.iat)}, over the limit of "
            f"{timedelta(seconds=MAX_LIFETIME_SECONDS)}"
        )
    if claims.jti in expected.used:
        raise TokenRefused(f"the token {claims.jti[:40]} was used already; sign a new one")
    return claims
