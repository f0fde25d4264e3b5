"""Sign-in with a passkey: the person names themself, touches a passkey registered to that name.

The registered passkeys are the approvers' own, in the agents' configs (``approval.approvers[]
.passkeys``, with the config's ``passkey_rp_id`` and ``passkey_origins``): those of the running
agents and of the configs the gateway reads. The challenge is 32 random bytes kept in this
browser's signed flow cookie (``SameSite=Lax``: a cross-site page cannot post a sign-in with it)
and used once in this process; py_webauthn (the library the workflow verifies decisions with)
checks the assertion: challenge, relying party, origin, user verification, signature.

A passkey sign-in grants ``viewer`` and ``approver``: reading the inbox and relaying decisions,
each of which still needs its own passkey touch, verified by the action's workflow against the
action's own config. Anything more (starting agents, applying configs) takes the identity
provider's sign-in, where the person's groups say what they may do, or an API token's, whose
roles do.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from aiops.api.auth import Principal
from aiops.client import AiopsClient
from aiops.contracts.config import AgentConfig
from aiops.contracts.passkey import PasskeyCredential, SignedAssertion, b64url, b64url_decode
from workflows.passkey import signature_problem

from .session import FLOW_SECONDS, SessionRefused

ROLES = ["approver", "viewer"]
TIMEOUT_MS = 120_000
NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"


class PasskeySignInRefused(SessionRefused):
    """A passkey sign-in that cannot name anyone; the message says why."""


class SignInAssertion(SignedAssertion):
    """What the console's script posts after ``navigator.credentials.get``: who, and the assertion."""

    name: str = Field(pattern=NAME_PATTERN)


@dataclass(frozen=True)
class Registered:
    credential: PasskeyCredential
    rp_id: str
    origins: tuple[str, ...]
    agent_id: str


def registered(name: str, configs: list[AgentConfig]) -> list[Registered]:
    """Every passkey registered to ``name`` in these configs, with its relying party."""
    found: dict[tuple[str, str], Registered] = {}
    for config in configs:
        settings = config.approval
        approver = settings.approver(name)
        if approver is None or not settings.passkey_rp_id:
            continue
        for key in approver.passkeys:
            entry = Registered(key, settings.passkey_rp_id, tuple(settings.passkey_origins), config.id)
            found.setdefault((key.id.rstrip("="), entry.rp_id), entry)
    return list(found.values())


async def known_configs(client: AiopsClient, gateway_configs: dict[str, AgentConfig]) -> list[AgentConfig]:
    """The running agents' configs and those the gateway reads (the running one first). An agent
    that does not answer its status query (its workers down) is known by the gateway's copy, if
    any: one silent agent does not stop everybody signing in."""
    found = await client.agents.survey()
    running = {s.agent_id: s.config for s in found.statuses}
    return [*running.values(), *(c for i, c in gateway_configs.items() if i not in running)]


class PasskeySignIn:
    """Challenges handed out and used, per process (a used one is refused even with its cookie)."""

    def __init__(self, max_kept: int = 10_000) -> None:
        self.used: OrderedDict[str, float] = OrderedDict()
        self.max_kept = max_kept

    def options(self, name: str, keys: list[Registered]) -> tuple[dict[str, Any], dict[str, Any]]:
        """What ``navigator.credentials.get`` needs, and the flow to keep in the browser's cookie."""
        if not keys:
            raise PasskeySignInRefused(
                f"{name[:80]!r} has no registered passkey in the running agents' configs: sign in with "
                "the identity provider or an API token, enroll one (Passkeys), and have an admin add its line"
            )
        rp_ids = sorted({k.rp_id for k in keys})
        rp_id = rp_ids[0]
        challenge = b64url(secrets.token_bytes(32))
        options = {
            "challenge": challenge,
            "rp_id": rp_id,
            "allow_credentials": [k.credential.id for k in keys if k.rp_id == rp_id],
            "timeout_ms": TIMEOUT_MS,
        }
        flow = {"name": name, "challenge": challenge, "rp_id": rp_id, "expires": time.time() + FLOW_SECONDS}
        return options, flow

    def verify(self, flow: dict[str, Any], assertion: SignInAssertion, keys: list[Registered]) -> Principal:
        """The person the assertion proves, or ``PasskeySignInRefused`` saying why."""
        if assertion.name != flow.get("name"):
            raise PasskeySignInRefused("the sign-in names another person than the one asked for")
        challenge = str(flow.get("challenge", ""))
        if challenge in self.used:
            raise PasskeySignInRefused("this passkey sign-in was already used; start again")
        wanted = assertion.credential_id.rstrip("=")
        key = next(
            (k for k in keys if k.credential.id.rstrip("=") == wanted and k.rp_id == flow.get("rp_id")), None
        )
        if key is None:
            raise PasskeySignInRefused(
                f"unregistered credential: passkey {wanted[:24]} is not registered to {assertion.name[:80]!r}"
            )
        problem = signature_problem(
            assertion, b64url_decode(challenge), key.rp_id, key.origins, key.credential.public_key
        )
        if problem is not None:
            raise PasskeySignInRefused(f"the passkey sign-in does not verify: {problem[:200]}")
        self.used[challenge] = time.time()
        while len(self.used) > self.max_kept:
            self.used.popitem(last=False)
        return Principal(name=assertion.name, roles=list(ROLES), via="passkey")
