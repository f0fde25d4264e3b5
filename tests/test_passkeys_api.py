"""Passkey decisions through the REST API on the real stack (gateway, Temporal, PostgreSQL, a
worker), with a software authenticator in place of the browser's.

Enroll through the API (registration options, the authenticator's registration, the config
line back), put that line in the agent's config, then approve an action waiting for approval
with a passkey assertion over the challenge the API hands out: the workflow verifies it. The
same assertion sent again, one for another action, and one from a passkey nobody registered are
refused with their reasons, verbatim, and audited; a second approver's token completes the
quorum and the action executes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import ApprovalSettings
from aiops.contracts.passkey import PasskeyClaims, PasskeyCredential, b64url_decode, passkey_challenge
from tests.helpers import agent_config, eventually, start_pending_action
from tests.support.api_stack import api_stack, login_jwt
from tests.support.soft_authenticator import SoftAuthenticator
from tests.test_signed_approvals import BOB, signed_team, token

ORIGIN = "http://localhost:8080"
RP_ID = "localhost"


def with_passkey(line: PasskeyCredential) -> ApprovalSettings:
    team = signed_team()
    approvers = [
        a.model_copy(update={"passkeys": [line]}) if a.name == "alice" else a for a in team.approvers
    ]
    return team.model_copy(
        update={"approvers": approvers, "passkey_rp_id": RP_ID, "passkey_origins": [ORIGIN]}
    )


async def enroll(http: httpx.AsyncClient, authenticator: SoftAuthenticator) -> PasskeyCredential:
    headers = {"Origin": ORIGIN}
    options = await http.post("/v1/passkeys/registration-options", headers=headers)
    assert options.status_code == 200, options.text
    created = authenticator.create(options.json())
    answer = await http.post(
        "/v1/passkeys/registration", json=created, headers=headers, params={"label": "laptop"}
    )
    assert answer.status_code == 200, answer.text
    return PasskeyCredential.model_validate(answer.json())


async def decide(http: httpx.AsyncClient, action_id: str, credential: str) -> httpx.Response:
    return await http.post(
        f"/v1/actions/{action_id}/decision", json={"approve": True, "credential": credential}
    )


async def test_an_action_is_approved_with_a_passkey_and_a_replay_is_refused_and_audited(
    aiops: AiopsClient, worker, tmp_path: Path
) -> None:
    laptop = SoftAuthenticator(RP_ID, ORIGIN)
    stranger = SoftAuthenticator(RP_ID, ORIGIN)
    async with api_stack(aiops, tmp_path) as api:
        async with api.http(login_jwt("alice", ["sre-team", "approvers"])) as alice:
            line = await enroll(alice, laptop)
            assert line == laptop.config_line("laptop")  # the id and COSE key the authenticator holds
            # A registration whose challenge the API did not issue is refused, and recorded.
            forged = laptop.create({"challenge": "A" * 75, "rp": {"id": RP_ID}})
            refused = await alice.post("/v1/passkeys/registration", json=forged, headers={"Origin": ORIGIN})
            assert refused.status_code == 400 and "not issued to alice" in refused.json()["error"]
            recorded = await api.tokens.refusals(10)
            assert any(r.who == "alice" and "not issued to alice" in r.reason for r in recorded)

            config = agent_config("scripted", approval=with_passkey(line))
            _, action_id, record = await start_pending_action(aiops, config, "critical", requested_by="dave")
            asked = await alice.post(f"/v1/actions/{action_id}/passkey-challenge", json={"verb": "approve"})
            assert asked.status_code == 200, asked.text
            offer: dict[str, Any] = asked.json()
            claims = PasskeyClaims.model_validate(offer["claims"])
            assert (claims.aud, claims.verb, claims.digest, claims.sub) == (
                action_id, "approve", record.plan_digest, "alice"
            )  # fmt: skip
            assert b64url_decode(offer["challenge"]) == passkey_challenge(claims)
            assert offer["rp_id"] == RP_ID and offer["allow_credentials"] == [laptop.id]

            credential = laptop.sign(claims)
            answer = await decide(alice, action_id, credential)
            assert answer.status_code == 200, answer.text
            [approval] = answer.json()["approvals"]
            assert approval["approver"] == "alice" and approval["authenticated"] is True
            assert approval["token_id"] == f"passkey:{claims.nonce}"

            wrong = {
                "replayed": (credential, "already used"),
                "another action": (
                    laptop.sign(claims.model_copy(update={"aud": action_id + "x"})),
                    "made for another action",
                ),
                "unregistered": (
                    stranger.sign(claims.model_copy(update={"nonce": "B" * 24})),
                    "unregistered credential",
                ),
            }
            for why, (attempt, says) in wrong.items():
                answer = await decide(alice, action_id, attempt)
                assert answer.status_code == 409, (why, answer.text)
                latest = (await aiops.approvals.action(action_id)).refused[-1].reason
                assert answer.json()["error"] == f"refused: {latest}", why  # verbatim
                assert says in latest, (why, latest)
            rows = await eventually(
                lambda: aiops.audit.rows(action_id=action_id),
                lambda rs: sum(r.step == "approval_refused" for r in rs) == len(wrong),
            )
            audited = [r.detail["reason"] for r in rows if r.step == "approval_refused"]
            assert all(any(says in reason for reason in audited) for _, says in wrong.values()), audited
            assert any(
                r.step == "approval" and r.detail.get("token_id") == f"passkey:{claims.nonce}" for r in rows
            )

        async with api.http(login_jwt("bob", ["sre-team", "approvers"])) as bob:
            # bob has no passkey: no challenge for him, and his signed token completes the quorum.
            none = await bob.post(f"/v1/actions/{action_id}/passkey-challenge", json={"verb": "approve"})
            assert none.status_code == 409 and "no registered passkey" in none.json()["error"]
            answer = await decide(bob, action_id, token(BOB, action_id, record.plan_digest))
            assert answer.status_code == 200, answer.text
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
