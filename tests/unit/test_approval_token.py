"""Signed approvals, table-tested: every way a token can fail to prove a decision is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from workflows.approval_token import (
    TokenRefused,
    generate_private_key,
    parse_public_key,
    public_key_text,
    sign,
    verify,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ACTION = "action-disk:e1"
DIGEST = "d" * 64
ALICE, BOB, MALLORY = generate_private_key(), generate_private_key(), generate_private_key()
KEYS = {"alice": public_key_text(ALICE.public_key()), "bob": public_key_text(BOB.public_key())}


def check(token: str, verb: str = "approve", digest: str | None = DIGEST, used: set[str] | None = None):
    return verify(token, KEYS, ACTION, verb, digest, NOW, used or set())  # type: ignore[arg-type]


def test_a_token_signed_for_this_decision_verifies() -> None:
    claims = check(sign(ALICE, "alice", ACTION, "approve", DIGEST, NOW - timedelta(minutes=1)))
    assert claims.sub == "alice" and claims.verb == "approve" and len(claims.jti) >= 8
    reject = check(sign(BOB, "bob", ACTION, "reject", None, NOW), verb="reject", digest=DIGEST)
    assert reject.sub == "bob"  # a rejection needs no digest: rejecting is always safe


@pytest.mark.parametrize(
    ("token", "verb", "says"),
    [
        (
            sign(MALLORY, "alice", ACTION, "approve", DIGEST, NOW),
            "approve",
            "does not match alice's public key",
        ),
        (sign(MALLORY, "mallory", ACTION, "approve", DIGEST, NOW), "approve", "has no public key"),
        (sign(ALICE, "alice", "action-disk:e2", "approve", DIGEST, NOW), "approve", "not for this action"),
        (sign(ALICE, "alice", ACTION, "approve", "e" * 64, NOW), "approve", "the current plan is"),
        (sign(ALICE, "alice", ACTION, "approve", None, NOW), "approve", "the current plan is"),
        (sign(ALICE, "alice", ACTION, "reject", None, NOW), "approve", "is to reject, not to approve"),
        (sign(ALICE, "alice", ACTION, "approve", DIGEST, NOW - timedelta(hours=1)), "approve", "expired"),
        (
            sign(ALICE, "alice", ACTION, "approve", DIGEST, NOW + timedelta(hours=1)),
            "approve",
            "in the future",
        ),
        (
            sign(
                ALICE,
                "alice",
                ACTION,
                "approve",
                DIGEST,
                NOW - timedelta(hours=1),
                lifetime_seconds=3 * 86400,
            ),
            "approve",
            "over the limit",
        ),
        ("not a token", "approve", "not a signed token"),
        ("", "approve", "not a signed token"),
        (
            jwt.encode({"sub": "alice"}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256"),
            "approve",
            "only EdDSA",
        ),
        (
            jwt.encode({"sub": "alice", "aud": ACTION}, ALICE, algorithm="EdDSA", headers={"kid": "alice"}),
            "approve",
            "claims are invalid",
        ),
    ],
    ids=[
        "forged-signature",
        "untrusted-signer",
        "other-action",
        "other-plan",
        "no-digest",
        "wrong-verb",
        "expired",
        "issued-in-future",
        "lives-too-long",
        "garbage",
        "empty",
        "hmac-alg",
        "missing-claims",
    ],
)
def test_a_token_that_does_not_prove_this_decision_is_refused(token: str, verb: str, says: str) -> None:
    with pytest.raises(TokenRefused, match=says):
        check(token, verb=verb)


def test_a_used_token_is_refused_the_second_time() -> None:
    token = sign(ALICE, "alice", ACTION, "approve", DIGEST, NOW, token_id="one-time-id")
    claims = check(token)
    with pytest.raises(TokenRefused, match="used already"):
        check(token, used={claims.jti})


def test_a_token_altered_after_signing_is_refused() -> None:
    header, _, signature = sign(ALICE, "alice", "action-disk:e9", "approve", DIGEST, NOW).split(".")
    _, payload, _ = sign(ALICE, "alice", ACTION, "approve", DIGEST, NOW).split(".")  # claims for this action
    with pytest.raises(TokenRefused, match="forged or altered"):
        check(f"{header}.{payload}.{signature}")  # another action's signature on them


@pytest.mark.parametrize(
    ("text", "says"),
    [("ssh-ed25519 AAAA", "starts with"), ("ed25519:abc", "32 bytes"), ("ed25519:!!!", "32 bytes|base64")],
)
def test_a_malformed_public_key_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_public_key(text)


def test_the_public_key_text_round_trips() -> None:
    text = public_key_text(ALICE.public_key())
    assert text.startswith("ed25519:") and len(text) == len("ed25519:") + 43
    assert public_key_text(parse_public_key(text)) == text
