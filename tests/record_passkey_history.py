"""Record the replay test's passkey history: ``python -m tests.record_passkey_history PREFIX``.

One action decided with passkeys (``PREFIX`` + ``action_passkey_decisions``): an assertion for
another plan refused, alice's passkey approval, the same assertion replayed and refused, and bob's
signed token completing the quorum. Replaying it proves py_webauthn's verification answers in
replay as it did live (same refusals, same acceptance). The set-up is ``tests.record_histories``'s
(which records every other history and refuses to overwrite them); the same never-overwrite rule
holds here.
"""

from __future__ import annotations

import asyncio
import sys

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient, AiopsError
from aiops.contracts.action import ActionStatus, DecisionRequest
from aiops.contracts.passkey import PasskeyClaims, b64url
from aiops.keys import KeyFile
from tests import record_histories
from tests.helpers import agent_config, event, eventually, team
from tests.support.soft_authenticator import SoftAuthenticator
from workflows.approval_token import generate_private_key, private_key_pem

RP_ID, ORIGIN = "localhost", "http://localhost:8080"


async def record(aiops: AiopsClient) -> None:
    laptop = SoftAuthenticator(RP_ID, ORIGIN)
    bob = KeyFile(approver="bob", private_key=private_key_pem(generate_private_key()).decode())
    approval = team({"bob": bob.public_key()})
    approvers = [
        a.model_copy(update={"passkeys": [laptop.config_line("laptop")]}) if a.name == "alice" else a
        for a in approval.approvers
    ]
    approval = approval.model_copy(
        update={"approvers": approvers, "passkey_rp_id": RP_ID, "passkey_origins": [ORIGIN]}
    )
    config = agent_config("scripted", id="replay-passkey", approval=approval)
    await aiops.agents.start(config)
    critical = event("alert", id="p-critical", risk="critical")
    await aiops.events.send_many(config.id, [critical])
    action_id = aiops.approvals.action_id(config.id, critical.id)
    record = await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
    )
    now = int((await aiops.approvals.action(action_id)).history[-1].at.timestamp())

    def claims(nonce: int, digest: str | None) -> PasskeyClaims:
        return PasskeyClaims(
            aud=action_id,
            verb="approve",
            digest=digest,
            sub="alice",
            exp=now + 600,
            nonce=b64url(bytes([nonce]) * 16),
        )

    async def decide(credential: str) -> None:
        try:
            await aiops.approvals.decide(
                action_id, DecisionRequest(approve=True, approver="alice", credential=credential)
            )
        except AiopsError as err:
            print("refused as expected:", err)

    await decide(laptop.sign(claims(1, "0" * 64)))  # another plan: refused
    good = laptop.sign(claims(2, record.plan_digest))
    await decide(good)  # accepted
    await decide(good)  # replayed: refused
    await aiops.approvals.approve(action_id, comment="signed too", key=bob)
    assert (await aiops.approvals.wait_for_action(action_id)).status == ActionStatus.VERIFIED
    await record_histories.save(aiops, "action_passkey_decisions", action_id)


async def main() -> int:
    record_histories.PREFIX = sys.argv[1] if len(sys.argv) > 1 else ""
    if not record_histories.PREFIX:
        raise SystemExit("usage: python -m tests.record_passkey_history PREFIX (e.g. g1_)")
    await record_histories.on_a_fresh_stack(record)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
