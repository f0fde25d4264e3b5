"""Who may command an agent, table-tested without a server (``workflows/agent/command_gate.py``), and
tokens from a trusted identity provider (``approval_token.verify_identity``)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from aiops.contracts.config import AgentConfig, AgentVerb, ApprovalSettings, Approver, TrustedIssuer
from workflows.agent.command_gate import (
    MAX_USED_COMMAND_TOKENS,
    check_command,
    command_digest,
    forget_expired,
    stop_digest,
)
from workflows.approval_token import (
    TokenRefused,
    generate_private_key,
    public_key_text,
    sign,
    verify_identity,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
AGENT = "agent-disk-1"
BOB, OSCAR = generate_private_key(), generate_private_key()
TEAM = ApprovalSettings(
    approvers=[
        Approver(name="bob", roles=["sre", "admin"], public_key=public_key_text(BOB.public_key())),
        Approver(name="oscar", roles=["operator"], public_key=public_key_text(OSCAR.public_key())),
        Approver(name="nokey", roles=["admin"]),
    ]
)


def config(approval: ApprovalSettings = TEAM) -> AgentConfig:
    return AgentConfig(id="disk-1", name="disk", type="disk", approval=approval)


def check(verb: AgentVerb, actor: str, credential: str | None, digest: str | None = None, **kw: Any):
    used = kw.pop("used", {})
    return check_command(kw.pop("config", config()), verb, actor, credential, digest, AGENT, NOW, used)


def test_a_signed_command_from_someone_with_the_role_is_allowed() -> None:
    verdict = check(AgentVerb.PAUSE, "oscar", sign(OSCAR, "oscar", AGENT, "pause", None, NOW))
    assert verdict.reason is None and verdict.authenticated and verdict.actor == "oscar"
    assert verdict.token_id and verdict.token_expires == int(NOW.timestamp()) + 15 * 60
    stop = sign(BOB, "bob", AGENT, "stop", stop_digest(False), NOW)
    assert check(AgentVerb.STOP, "", stop, stop_digest(False)).actor == "bob"  # the name comes from the token


@pytest.mark.parametrize(
    ("verb", "actor", "credential", "digest", "says"),
    [
        (AgentVerb.STOP, "bob", None, stop_digest(True), "is not signed"),
        (AgentVerb.RECONFIGURE, "bob", None, "d", "aiops config apply FILE --key KEY"),
        (AgentVerb.STOP, "oscar", sign(OSCAR, "oscar", AGENT, "stop", stop_digest(True), NOW),
         stop_digest(True), "oscar may not stop"),
        (AgentVerb.RESUME, "oscar", sign(OSCAR, "oscar", AGENT, "resume", None, NOW), None, "may not resume"),
        (AgentVerb.RECONFIGURE, "nokey", sign(BOB, "nokey", AGENT, "reconfigure", "d", NOW), "d",
         "has no public key"),
        (AgentVerb.STOP, "bob", sign(BOB, "bob", AGENT, "stop", stop_digest(True), NOW), stop_digest(False),
         "different stop"),
        (AgentVerb.PAUSE, "bob", sign(BOB, "bob", "agent-other", "pause", None, NOW), None,
         "not for this agent"),
        (AgentVerb.PAUSE, "bob", sign(BOB, "bob", AGENT, "resume", None, NOW), None, "is to resume"),
        (AgentVerb.PAUSE, "bob", sign(BOB, "bob", AGENT, "pause", None, NOW - timedelta(hours=1)), None,
         "expired"),
        (AgentVerb.PAUSE, "oscar", sign(BOB, "bob", AGENT, "pause", None, NOW), None, "signed by bob"),
        (AgentVerb.PAUSE, "bob", sign(OSCAR, "bob", AGENT, "pause", None, NOW), None, "forged"),
        (AgentVerb.PAUSE, "bob", "e30." * 2000, None, "not a signed token"),
    ],
)  # fmt: skip
def test_what_does_not_prove_an_allowed_command_is_refused(
    verb: AgentVerb, actor: str, credential: str | None, digest: str | None, says: str
) -> None:
    verdict = check(verb, actor, credential, digest)
    assert verdict.reason is not None and says in verdict.reason


def test_a_token_is_used_once_and_forgotten_only_once_expired() -> None:
    token = sign(BOB, "bob", AGENT, "pause", None, NOW)
    first = check(AgentVerb.PAUSE, "bob", token)
    assert first.token_id is not None and first.token_expires is not None
    used = {first.token_id: first.token_expires}
    assert "used already" in str(check(AgentVerb.PAUSE, "bob", token, used=used).reason)
    forget_expired(used, NOW + timedelta(minutes=14))
    assert used  # still replayable: kept
    forget_expired(used, NOW + timedelta(minutes=15))
    assert used == {}
    full = {f"t{n}": 2**40 for n in range(MAX_USED_COMMAND_TOKENS)}
    assert "try again later" in str(check(AgentVerb.PAUSE, "bob", token, used=full).reason)


def test_dev_mode_takes_names_but_a_named_approver_still_needs_the_role() -> None:
    dev = config(TEAM.model_copy(update={"allow_unsigned": True}))
    assert check(AgentVerb.STOP, "bob", None, config=dev).reason is None
    assert not check(AgentVerb.STOP, "bob", None, config=dev).authenticated
    assert "oscar may not stop" in str(check(AgentVerb.STOP, "oscar", None, config=dev).reason)
    assert "unknown approver 'eve'" in str(check(AgentVerb.STOP, "eve", None, config=dev).reason)
    first_steps = config(ApprovalSettings(allow_unsigned=True))
    assert check(AgentVerb.STOP, "", None, config=first_steps).actor == "anonymous"
    assert "is not signed" in str(
        check(AgentVerb.STOP, "bob", None, config=config(ApprovalSettings())).reason
    )


def test_command_roles_are_config() -> None:
    open_resume = TEAM.model_copy(update={"command_roles": {AgentVerb.RESUME: ["operator"]}})
    token = sign(OSCAR, "oscar", AGENT, "resume", None, NOW)
    assert check(AgentVerb.RESUME, "oscar", token, config=config(open_resume)).reason is None
    assert open_resume.roles_for(AgentVerb.STOP) == ["sre", "admin"]  # the others keep their defaults


def test_digests_name_what_a_stop_or_config_change_allows() -> None:
    assert stop_digest(True) != stop_digest(False)
    assert command_digest(AgentVerb.PAUSE, {"x": 1}) is None
    assert command_digest(AgentVerb.RECONFIGURE, {"a": 1, "b": 2}) == command_digest(
        AgentVerb.RECONFIGURE, {"b": 2, "a": 1}
    )


# ----- trusted identity providers -----------------------------------------------------------

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = "https://login.example.test"


def jwk(key: Any, kid: str, algorithm: type[jwt.algorithms.Algorithm]) -> dict[str, Any]:
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid}  # type: ignore[attr-defined]


ISSUERS = [
    TrustedIssuer(
        issuer=ISSUER,
        jwks={"keys": [jwk(EC_KEY, "ec-1", jwt.algorithms.ECAlgorithm),
                       jwk(RSA_KEY, "rsa-1", jwt.algorithms.RSAAlgorithm)]},
        name_claim="preferred_username",
        group_roles={"sre-team": ["sre"]},
    )
]  # fmt: skip


def idp(claims: dict[str, Any], key: Any = EC_KEY, alg: str = "ES256", kid: str = "ec-1") -> str:
    base = {
        "iss": ISSUER, "sub": "00u1", "preferred_username": "erin", "groups": ["sre-team", "other"],
        "aud": AGENT, "verb": "stop", "digest": stop_digest(True), "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 300, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return jwt.encode({**base, **claims}, key, algorithm=alg, headers={"kid": kid})


def verify_idp(token: str):
    return verify_identity(token, {}, ISSUERS, AGENT, "stop", stop_digest(True), NOW, set())


def test_a_trusted_issuers_token_names_the_person_and_their_roles() -> None:
    who = verify_idp(idp({}))
    assert (who.name, who.roles, who.issuer) == ("erin", ["sre"], ISSUER)
    assert verify_idp(idp({}, RSA_KEY, "RS256", "rsa-1")).name == "erin"
    allowed = check(
        AgentVerb.STOP, "", idp({}), stop_digest(True), config=config(ApprovalSettings(issuers=ISSUERS))
    )
    assert allowed.reason is None and allowed.issuer == ISSUER and allowed.actor == "erin"


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (idp({"iss": "https://evil.test"}), "does not trust"),
        (idp({}, ec.generate_private_key(ec.SECP256R1())), "forged"),
        (idp({}, kid="unknown"), "not in the pinned key set"),
        (jwt.encode({"iss": ISSUER, "sub": "x"}, "s" * 32, algorithm="HS256"), "HS256"),
        (idp({"preferred_username": 7}), "not a name"),
        (idp({"aud": "agent-other"}), "not for this agent"),
        (idp({"exp": int(NOW.timestamp()) - 1}), "expired"),
        (idp({"digest": stop_digest(False)}), "different stop"),
    ],
)
def test_what_a_trusted_issuer_did_not_sign_for_this_is_refused(token: str, says: str) -> None:
    with pytest.raises(TokenRefused, match=says):
        verify_idp(token)


def test_an_issuer_without_the_group_gives_no_role() -> None:
    settings = config(ApprovalSettings(issuers=ISSUERS))
    verdict = check(AgentVerb.STOP, "", idp({"groups": ["other"]}), stop_digest(True), config=settings)
    assert "erin may not stop" in str(verdict.reason)


def test_a_key_set_must_be_public_keys_and_known_algorithms() -> None:
    with pytest.raises(ValidationError, match="shared-secret"):
        TrustedIssuer(issuer=ISSUER, jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ValidationError, match="not accepted"):
        TrustedIssuer(issuer=ISSUER, jwks=ISSUERS[0].jwks, algorithms=["HS256"])
    with pytest.raises(ValidationError, match="over 65536 bytes"):
        TrustedIssuer(issuer=ISSUER, jwks={"keys": [], "pad": "x" * 70000})
