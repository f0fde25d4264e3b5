"""Passkey decisions verified as the workflow verifies them: a real (software) authenticator's
assertion over the decision's claims, checked by ``verify_identity`` with py_webauthn.

Each wrong assertion is refused with its own reason; the right one proves its approver and is
recorded under a one-use id.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from aiops.contracts.config import ApprovalSettings, Approver
from aiops.contracts.passkey import (
    PASSKEY_PREFIX,
    PasskeyAssertion,
    PasskeyClaims,
    PasskeyCredential,
    PasskeyError,
    assertion_from_browser,
    b64url,
    canonical_claims,
    parse_envelope,
    passkey_challenge,
)
from tests.support.soft_authenticator import SoftAuthenticator
from workflows.approval_token import TokenRefused, verify_identity
from workflows.passkey import passkey_token_id

RP_ID = "localhost"
ORIGIN = "http://localhost:8080"
ACTION = "action-agent-1-evt-1"
DIGEST = "a" * 64
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
MOMENT = int(NOW.timestamp())

ALICE = SoftAuthenticator(RP_ID, ORIGIN)
STRANGER = SoftAuthenticator(RP_ID, ORIGIN)  # a passkey nobody registered


def settings(**changes: Any) -> ApprovalSettings:
    base: dict[str, Any] = {
        "approvers": [
            Approver(name="alice", roles=["sre"], passkeys=[ALICE.config_line("laptop")]),
            Approver(name="bob", roles=["sre"]),
        ],
        "passkey_rp_id": RP_ID,
        "passkey_origins": [ORIGIN],
    }
    return ApprovalSettings(**{**base, **changes})


def claims(**changes: Any) -> PasskeyClaims:
    base: dict[str, Any] = {
        "aud": ACTION,
        "verb": "approve",
        "digest": DIGEST,
        "sub": "alice",
        "exp": MOMENT + 300,
        "nonce": b64url(bytes(range(16))) + "x" * (changes.pop("nonce_extra", 0)),
    }
    return PasskeyClaims(**{**base, **changes})


def verify(credential: str, used: set[str] | None = None, config: ApprovalSettings | None = None, **kw: Any):
    return verify_identity(
        credential,
        {},
        [],
        kw.get("workflow_id", ACTION),
        kw.get("verb", "approve"),
        kw.get("digest", DIGEST),
        kw.get("now", NOW),
        used if used is not None else set(),
        passkeys=config or settings(),
    )


def test_a_passkey_assertion_over_the_claims_proves_its_approver() -> None:
    c = claims()
    who = verify(ALICE.sign(c))
    assert who.name == "alice" and who.issuer is None
    assert who.claims.jti == passkey_token_id(c.nonce) and who.claims.exp == c.exp
    assert who.claims.digest == DIGEST and who.claims.aud == ACTION


def test_a_rejection_needs_no_digest() -> None:
    c = claims(verb="reject", digest=None)
    assert verify(ALICE.sign(c), verb="reject").name == "alice"


def test_the_challenge_is_the_sha256_of_the_canonical_claims() -> None:
    c = claims(verb="reject", digest=None)
    text = canonical_claims(c).decode()
    assert text == (
        f'{{"aud":"{ACTION}","digest":null,"exp":{c.exp},"nonce":"{c.nonce}","sub":"alice","verb":"reject"}}'
    )
    assert len(passkey_challenge(c)) == 32
    assert passkey_challenge(c) != passkey_challenge(claims(verb="reject", digest=None, exp=c.exp + 1))


WRONG: list[tuple[str, Any, str]] = [
    ("another action", lambda: verify(ALICE.sign(claims(aud=ACTION + "x"))), "made for another action"),
    ("another plan", lambda: verify(ALICE.sign(claims(digest="b" * 64))), "approves another plan"),
    ("another verb", lambda: verify(ALICE.sign(claims(verb="reject")), verb="approve"), "is to reject"),
    ("expired", lambda: verify(ALICE.sign(claims(exp=MOMENT))), "expired at"),
    ("living too long", lambda: verify(ALICE.sign(claims(exp=MOMENT + 86_400))), "over the limit"),
    ("unregistered credential", lambda: verify(STRANGER.sign(claims())), "unregistered credential"),
    ("someone without passkeys", lambda: verify(ALICE.sign(claims(sub="bob"))), "no registered passkey"),
    ("an unknown person", lambda: verify(ALICE.sign(claims(sub="mallory"))), "no registered passkey"),
    ("wrong origin", lambda: verify(ALICE.sign(claims(), origin="http://evil.test")), "another origin"),
    ("wrong rp id", lambda: verify(ALICE.sign(claims(), rp_id="evil.test")), "another relying party"),
    (
        "no user verification",
        lambda: verify(ALICE.sign(claims(), user_verified=False)),
        "did not verify the user",
    ),
    ("no relying party configured", lambda: verify(ALICE.sign(claims()), config=_no_rp()), "passkey_rp_id"),
    ("an agent command", lambda: _as_command(ALICE.sign(claims())), "decisions on actions only"),
]


def _no_rp() -> ApprovalSettings:
    return ApprovalSettings.model_construct(**{**dict(settings()), "passkey_rp_id": None})


def _as_command(credential: str):
    return verify_identity(credential, {}, [], ACTION, "pause", None, NOW, set())


@pytest.mark.parametrize(("why", "attempt", "says"), WRONG, ids=[w[0] for w in WRONG])
def test_each_wrong_assertion_is_refused_with_its_reason(why: str, attempt: Any, says: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        attempt()
    assert says in str(refused.value), (why, str(refused.value))


def test_a_used_assertion_is_refused_as_already_used() -> None:
    c = claims()
    credential = ALICE.sign(c)
    first = verify(credential)
    with pytest.raises(TokenRefused, match="already used"):
        verify(credential, used={first.claims.jti})


def _tampered(field: str, value: Any) -> str:
    assertion = ALICE.assert_claims(claims())
    return assertion.model_copy(update={field: value}).envelope()


def test_tampering_with_the_signature_or_the_signed_data_is_refused() -> None:
    good = ALICE.assert_claims(claims())
    signature = bytearray(base64.urlsafe_b64decode(good.signature + "=="))
    signature[-1] ^= 1
    with pytest.raises(TokenRefused, match="signature does not match alice's passkey laptop"):
        verify(_tampered("signature", b64url(bytes(signature))))
    # The claims swapped for others (another plan) under the same signature: the challenge differs.
    swapped = good.model_copy(update={"claims": claims(digest="c" * 64)})
    with pytest.raises(TokenRefused, match="approves another plan"):
        verify(swapped.envelope())
    swapped = good.model_copy(update={"claims": claims(exp=MOMENT + 301)})
    with pytest.raises(TokenRefused, match="challenge mismatch"):
        verify(swapped.envelope())
    other_auth_data = ALICE.get(passkey_challenge(claims()))["authenticator_data"]
    with pytest.raises(TokenRefused, match="signature does not match"):
        verify(_tampered("authenticator_data", other_auth_data))


GARBAGE = [
    PASSKEY_PREFIX,
    PASSKEY_PREFIX + "!!!not base64!!!",
    PASSKEY_PREFIX + b64url(b"not json"),
    PASSKEY_PREFIX + b64url(b"[1, 2, 3]"),
    PASSKEY_PREFIX + b64url(json.dumps({"claims": {}}).encode()),
    PASSKEY_PREFIX + "A" * 9000,
    PASSKEY_PREFIX
    + b64url(json.dumps({"claims": claims().model_dump(), "credential_id": "x" * 5000}).encode()),
]


@pytest.mark.parametrize("credential", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_and_oversized_envelopes_are_refused_saying_what(credential: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        verify(credential)
    message = str(refused.value)
    assert "passkey" in message and len(message) < 400, message


def test_a_garbled_client_data_or_authenticator_data_is_refused_not_crashed() -> None:
    for field, value in [
        ("client_data_json", b64url(b"{" * 40)),
        ("authenticator_data", b64url(b"\x00" * 40)),
        (
            "client_data_json",
            b64url(json.dumps({"type": "webauthn.create", "challenge": "", "origin": ORIGIN}).encode()),
        ),
    ]:
        with pytest.raises(TokenRefused, match="passkey"):
            verify(_tampered(field, value))


def test_the_envelope_round_trips_and_is_well_under_the_credential_limit() -> None:
    assertion = ALICE.assert_claims(claims())
    credential = assertion.envelope()
    assert parse_envelope(credential) == assertion
    assert len(credential) < 3000


def test_config_refuses_unusable_passkey_lines() -> None:
    with pytest.raises(ValidationError, match="not a COSE public key"):
        PasskeyCredential(id=ALICE.id, public_key=b64url(b"\x01" * 40))
    with pytest.raises(ValidationError, match="passkey_rp_id"):
        ApprovalSettings(approvers=[Approver(name="alice", passkeys=[ALICE.config_line()])])
    twice = [Approver(name=n, passkeys=[ALICE.config_line()]) for n in ("alice", "bob")]
    with pytest.raises(ValidationError, match="registered twice"):
        settings(approvers=twice)
    with pytest.raises(ValidationError, match="is not like"):
        settings(passkey_origins=["localhost:8080"])
    with pytest.raises(ValidationError, match="plan digest"):
        claims(digest=None)
    with pytest.raises(ValidationError):
        claims(nonce="short")


def test_the_assertion_model_names_every_field_base64url() -> None:
    fields = set(PasskeyAssertion.model_fields)
    assert fields == {
        "claims",
        "credential_id",
        "authenticator_data",
        "client_data_json",
        "signature",
        "user_handle",
    }


def test_a_browser_credential_becomes_an_assertion_or_a_reason() -> None:
    c = claims()
    made = ALICE.assert_claims(c)
    browser = made.browser_json()
    assert assertion_from_browser(c, browser) == made
    assert verify(assertion_from_browser(c, browser).envelope()).name == "alice"
    for broken in ({}, {"response": "x"}, {**browser, "response": {"signature": "!"}}):
        with pytest.raises(PasskeyError):
            assertion_from_browser(c, broken)
