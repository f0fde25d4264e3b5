"""Passkey decisions, verified in workflow code: a WebAuthn assertion over the decision's claims.

``approval_token.verify_identity`` hands a ``passkey:`` credential here. The checks, in order,
each refusing with its own reason (``PasskeyError``, refused as ``TokenRefused``, recorded and
audited like a token's):

1. the envelope parses and is bounded (``aiops.contracts.passkey.parse_envelope``);
2. its claims are for this action, this verb, this plan, and unexpired by ``workflow.now()``;
3. ``sub`` is an approver of the config the action pinned and the credential is one of theirs;
4. its nonce was not used on this action before (one use: ``used`` holds ``passkey:<nonce>``);
5. py_webauthn's ``verify_authentication_response`` with the challenge recomputed from the
   claims, the relying party id and origins of that config, the registered public key, and
   user verification required.

py_webauthn's verification is pure (hashing, CBOR parsing, a signature check through
``cryptography``), so replaying it gives the same answer. The authenticator's sign counter is
not tracked (it would need state across actions): replay is prevented by the one-use nonce
inside the signed challenge instead, and the aud binds the assertion to one action.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from aiops.contracts.config import ApprovalSettings
from aiops.contracts.passkey import (
    PasskeyError,
    SignedAssertion,
    b64url_decode,
    parse_envelope,
    passkey_challenge,
)

if TYPE_CHECKING:  # approval_token imports this module: only the type is needed here
    from workflows.approval_token import Expected

# A passkey assertion may be asked for at most this long before it expires.
MAX_PASSKEY_LIFETIME_SECONDS = 3600
TOKEN_ID_PREFIX = "passkey:"


def passkey_token_id(nonce: str) -> str:
    """The id a passkey decision is recorded (and refused as replayed) under."""
    return TOKEN_ID_PREFIX + nonce


def signature_problem(
    assertion: SignedAssertion, challenge: bytes, rp_id: str, origins: Sequence[str], public_key: str
) -> str | None:
    """None if py_webauthn verifies the assertion (signature, challenge, rp id, origin, user
    verification) against the registered ``public_key``; else its reason. Pure: the workflow's
    check and the console's passkey sign-in share it. The sign count is not tracked: a challenge
    is used once (a decision's nonce, a sign-in's random challenge), which is what stops replay."""
    # Imported here, not with the module: workflows imported anew in Temporal's sandbox (an agent
    # author's) must not load py_webauthn's C-extension dependencies a second time.
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        verify_authentication_response(
            credential=assertion.browser_json(),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=list(origins),
            credential_public_key=b64url_decode(public_key),
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as err:
        return str(err)
    return None


def verify_passkey(credential: str, settings: ApprovalSettings, expected: Expected) -> tuple[str, str, int]:
    """``(approver name, token id, expiry)`` if the assertion proves what is ``expected``;
    ``PasskeyError`` saying why otherwise (``verify_identity`` refuses with it)."""
    assertion = parse_envelope(credential)
    claims = assertion.claims
    workflow_id, verb, digest = expected.workflow_id, expected.verb, expected.digest
    if claims.aud != workflow_id:
        raise PasskeyError(
            f"the passkey assertion was made for another action ({claims.aud[:120]}), not this one "
            f"({workflow_id})"
        )
    if claims.verb != verb:
        raise PasskeyError(f"the passkey assertion is to {claims.verb}, not to {verb}")
    if verb == "approve" and claims.digest != digest:
        raise PasskeyError(
            f"the passkey assertion approves another plan ({str(claims.digest)[:12]}), the current plan "
            f"is {str(digest)[:12]}: review the current plan and sign again"
        )
    if (expired := expected.expired(claims.exp)) is not None:
        raise PasskeyError(
            f"the passkey assertion expired at {expired:%Y-%m-%d %H:%M:%S} UTC; ask for a new challenge"
        )
    if claims.exp - expected.moment > MAX_PASSKEY_LIFETIME_SECONDS:
        raise PasskeyError(
            f"the passkey assertion lives until {claims.exp}, over the limit of "
            f"{timedelta(seconds=MAX_PASSKEY_LIFETIME_SECONDS)} from now"
        )
    approver = settings.approver(claims.sub)
    if approver is None or not approver.passkeys:
        with_passkeys = ", ".join(a.name for a in settings.approvers if a.passkeys) or "none"
        raise PasskeyError(
            f"the passkey assertion is signed for {claims.sub[:80]!r}, who has no registered passkey in "
            f"the config this action checks against (approvers with passkeys: {with_passkeys})"
        )
    wanted = assertion.credential_id.rstrip("=")
    registered = next((p for p in approver.passkeys if p.id.rstrip("=") == wanted), None)
    if registered is None:
        raise PasskeyError(
            f"unregistered credential: passkey {wanted[:24]} is not one of {approver.name}'s registered "
            "passkeys in the config this action checks against (enroll it: docs/passkeys.md)"
        )
    token_id = passkey_token_id(claims.nonce)
    if token_id in expected.used:
        raise PasskeyError(
            f"the passkey assertion was already used (nonce {claims.nonce[:16]}); ask for a new challenge"
        )
    if not settings.passkey_rp_id or not settings.passkey_origins:
        raise PasskeyError("the config sets no approval.passkey_rp_id and passkey_origins to check against")
    problem = signature_problem(
        assertion,
        passkey_challenge(claims),
        settings.passkey_rp_id,
        settings.passkey_origins,
        registered.public_key,
    )
    if problem is not None:
        raise PasskeyError(_refusal(problem, approver.name, registered.label or wanted[:24], settings))
    return approver.name, token_id, claims.exp


def _refusal(problem: str, name: str, passkey: str, settings: ApprovalSettings) -> str:
    """py_webauthn's reason in the words of this decision."""
    if "challenge" in problem:
        return (
            "the passkey signed other claims than the assertion carries (challenge mismatch): forged "
            "or altered"
        )
    if "origin" in problem:
        return (
            f"the passkey assertion was made at another origin ({problem[:160]}); the config accepts "
            f"{', '.join(settings.passkey_origins)}"
        )
    if "RP ID" in problem:
        return (
            f"the passkey assertion was made for another relying party than {settings.passkey_rp_id} "
            "(wrong rp id)"
        )
    if "verif" in problem and "signature" not in problem:
        return (
            "the passkey did not verify the user (PIN or biometrics): user verification is required "
            "for a decision"
        )
    if "present" in problem:
        return "the passkey assertion was made without the user present"
    if "signature" in problem:
        return (
            f"the passkey assertion's signature does not match {name}'s passkey {passkey} (forged or altered)"
        )
    return f"the passkey assertion is not valid: {problem[:200]}"
