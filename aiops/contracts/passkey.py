"""Passkeys (WebAuthn): the second kind of signature a person decides an action with.

A passkey cannot sign arbitrary claims the way an Ed25519 key signs a JWT; it signs a
*challenge*. So the challenge is made of the decision's claims: ``passkey_challenge(claims)``
is the SHA-256 of their canonical JSON. An assertion over that challenge binds exactly what a
token binds (this action, this verb, this plan, an expiry, a one-use nonce), and the workflow,
given the claims back, recomputes the challenge and checks the authenticator's signature with
the approver's registered public key (``workflows/passkey.py``).

Everything here is pure and shared: the API computes the challenge it hands the browser, the
browser (or a test's software authenticator) signs it, and the workflow recomputes it.

On the wire the assertion travels in the ``credential`` field every decision channel already
carries: ``"passkey:" + base64url(JSON of PasskeyAssertion)``, so signals, updates, the CLI and
the API relay it unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aiops.contracts.errors import AiopsError

PASSKEY_PREFIX = "passkey:"
# base64url without padding (what WebAuthn's JSON forms use); padding is tolerated on input.
B64URL = r"^[A-Za-z0-9_-]*={0,2}$"
# A credential id is at most 1023 bytes (WebAuthn level 3): 1364 base64url characters.
MAX_CREDENTIAL_ID = 1400
# A COSE public key: about 77 bytes for P-256, 270 for RSA-2048; room for RSA-4096.
MAX_PUBLIC_KEY = 1200
MAX_PASSKEYS_PER_APPROVER = 10
# The nonce: at least 16 random bytes (22 base64url characters), at most 64.
NONCE_MIN, NONCE_MAX = 22, 86
PasskeyVerb = Literal["approve", "reject"]


class PasskeyError(AiopsError, ValueError):
    """An envelope or a config line that is not a usable passkey thing; the message says what.

    A ``ValueError`` so pydantic validators can raise it; callers turn it into a refusal."""


def b64url_decode(text: str) -> bytes:
    """The bytes of base64url ``text`` (padding optional); ``PasskeyError`` otherwise."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PasskeyError("not base64url text") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


class PasskeyCredential(_Strict):
    """One registered passkey of an approver, as ``POST /v1/passkeys/registration`` prints it:
    ``id`` (base64url credential id) and ``public_key`` (base64url of its COSE public key)."""

    id: str = Field(min_length=16, max_length=MAX_CREDENTIAL_ID, pattern=B64URL)
    public_key: str = Field(min_length=40, max_length=MAX_PUBLIC_KEY, pattern=B64URL)
    label: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _usable(self) -> PasskeyCredential:
        # Imported here: a module imported anew in Temporal's sandbox must not load py_webauthn's
        # C-extension dependencies (cbor2) a second time; see workflows/sandbox.py.
        from webauthn.helpers import decode_credential_public_key

        try:
            decode_credential_public_key(b64url_decode(self.public_key))
        except Exception as err:  # the library raises several kinds for a broken COSE key
            raise PasskeyError(
                f"passkey {self.id[:16]}: public_key is not a COSE public key ({str(err)[:80]})"
            ) from None
        return self


class PasskeyClaims(_Strict):
    """What a passkey assertion decides: the claims whose digest is its challenge.

    ``aud``: the action's workflow id; ``verb``: approve or reject; ``digest``: the plan digest
    reviewed (required to approve); ``sub``: the approver's name; ``exp``: unix seconds after
    which the workflow refuses it; ``nonce``: at least 16 random bytes, base64url, used once.
    """

    aud: str = Field(min_length=1, max_length=500)
    verb: PasskeyVerb
    digest: str | None = Field(default=None, max_length=128)
    sub: str = Field(min_length=1, max_length=200)
    exp: int = Field(ge=0, le=2**40)
    nonce: str = Field(min_length=NONCE_MIN, max_length=NONCE_MAX, pattern=r"^[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _digest_to_approve(self) -> PasskeyClaims:
        if self.verb == "approve" and not self.digest:
            raise ValueError("approving names the plan digest reviewed ('digest')")
        return self


def canonical_claims(claims: PasskeyClaims) -> bytes:
    """The claims as the challenge digests them: JSON with every key (``digest`` null when
    absent), keys sorted, no spaces, UTF-8 (``JSON.stringify`` of the object with sorted keys)."""
    body = claims.model_dump(mode="json")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def passkey_challenge(claims: PasskeyClaims) -> bytes:
    """The WebAuthn challenge for these claims: SHA-256 of their canonical JSON (32 bytes)."""
    return hashlib.sha256(canonical_claims(claims)).digest()


class SignedAssertion(_Strict):
    """A passkey's answer to ``navigator.credentials.get``; every binary field is base64url, as in
    the browser's ``toJSON()`` of the credential. Decisions and the console's sign-ins carry it."""

    credential_id: str = Field(min_length=16, max_length=MAX_CREDENTIAL_ID, pattern=B64URL)
    authenticator_data: str = Field(min_length=49, max_length=2048, pattern=B64URL)
    client_data_json: str = Field(min_length=20, max_length=3000, pattern=B64URL)
    signature: str = Field(min_length=16, max_length=1400, pattern=B64URL)
    user_handle: str | None = Field(default=None, max_length=100, pattern=B64URL)

    def browser_json(self) -> dict[str, object]:
        """The assertion in the JSON form WebAuthn libraries parse (``AuthenticationResponseJSON``)."""
        response: dict[str, object] = {
            "authenticatorData": self.authenticator_data.rstrip("="),
            "clientDataJSON": self.client_data_json.rstrip("="),
            "signature": self.signature.rstrip("="),
        }
        if self.user_handle:
            response["userHandle"] = self.user_handle.rstrip("=")
        raw_id = self.credential_id.rstrip("=")
        return {"id": raw_id, "rawId": raw_id, "type": "public-key", "response": response}


class PasskeyAssertion(SignedAssertion):
    """A signed assertion with the decision claims it was asked to sign (its challenge)."""

    claims: PasskeyClaims

    def envelope(self) -> str:
        """What goes in a decision's ``credential``: ``passkey:`` + base64url of this JSON."""
        return PASSKEY_PREFIX + b64url(self.model_dump_json(exclude_none=True).encode())


def assertion_from_browser(claims: PasskeyClaims, credential: dict[str, Any]) -> PasskeyAssertion:
    """The assertion of a browser's ``PublicKeyCredential.toJSON()`` (after
    ``navigator.credentials.get``) over ``claims``' challenge; ``PasskeyError`` if it is not one."""
    response = credential.get("response")
    if not isinstance(response, dict):
        raise PasskeyError("the credential has no 'response' object (PublicKeyCredential.toJSON())")
    try:
        return PasskeyAssertion(
            claims=claims,
            credential_id=credential.get("rawId") or credential.get("id"),
            authenticator_data=response.get("authenticatorData"),
            client_data_json=response.get("clientDataJSON"),
            signature=response.get("signature"),
            user_handle=response.get("userHandle") or None,
        )
    except ValidationError as err:
        raise PasskeyError(
            f"the browser's credential is not an assertion: {err.errors()[0]['msg']}"
        ) from None


def is_passkey_envelope(credential: str) -> bool:
    return credential.startswith(PASSKEY_PREFIX)


def parse_envelope(credential: str) -> PasskeyAssertion:
    """The assertion in a ``passkey:`` credential; ``PasskeyError`` saying what is wrong."""
    if not is_passkey_envelope(credential):
        raise PasskeyError(f"a passkey assertion starts with {PASSKEY_PREFIX!r}")
    body = credential[len(PASSKEY_PREFIX) :].strip()
    if not body or len(body) > 8192:
        raise PasskeyError("the passkey envelope is empty or over 8192 characters")
    try:
        raw = b64url_decode(body)
    except PasskeyError:
        raise PasskeyError("the passkey envelope is not base64url text") from None
    try:
        return PasskeyAssertion.model_validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the envelope"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise PasskeyError(f"the passkey assertion is malformed: {where}: {first['msg']}{more}") from None
