"""Who may pause, resume, stop, reset the circuit breaker of, or reconfigure an agent: one pure check.

The agent workflow asks ``check_command`` for every command a person sends, by signal (the Web UI,
``temporal workflow signal``) or by update (``aiops``, SDK clients), and records and audits a
refusal itself, so a refusal is in the audit log whoever sent it. Identity comes from a signed
token (``approval_token.verify_identity``: a personal key or a trusted issuer of the agent's
current config) bound to this agent's workflow id, the verb and, for ``stop`` and
``reconfigure``, the digest of what exactly is asked; authority from
``approval.command_roles``.

Dev mode (``approval.allow_unsigned``) takes names on trust: a named approver still needs the
role, and an agent with no approvers at all (first steps) takes any command. Every view says the
command was unauthenticated.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from aiops.contracts.agent import ReconfigureRequest
from aiops.contracts.config import AgentConfig, AgentVerb
from workflows.approval_token import TokenRefused, Verb, identity_roles, verify_identity

# Token ids of commands already taken are kept (with their expiry) so that none is used twice;
# tokens live at most a day, so this bounds how many signed commands an agent takes per day.
MAX_USED_COMMAND_TOKENS = 1000


class CommandVerdict(BaseModel):
    """``reason`` None: allowed, by ``actor`` (verified if ``authenticated``)."""

    reason: str | None = None
    actor: str = ""
    authenticated: bool = False
    token_id: str | None = None
    token_expires: int | None = None
    issuer: str | None = None


def command_digest(verb: AgentVerb, what: dict[str, Any] | None) -> str | None:
    """What a ``stop`` or ``reconfigure`` token allows, as a digest both signer and workflow compute
    from the same request (``what``: the request's fields that change the outcome)."""
    if verb not in (AgentVerb.STOP, AgentVerb.RECONFIGURE):
        return None
    text = json.dumps({"verb": verb.value, **(what or {})}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def stop_digest(drain: bool) -> str | None:
    """What a stop token allows: draining, or aborting the actions not yet executing."""
    return command_digest(AgentVerb.STOP, {"drain": drain})


def reconfigure_digest(request: ReconfigureRequest) -> str | None:
    """What a reconfigure token allows: this whole config, this rollback, or this stored version."""
    what = request.model_dump(mode="json", include={"config", "rollback_to", "version"})
    return command_digest(AgentVerb.RECONFIGURE, what)


def check_command(
    config: AgentConfig,
    verb: AgentVerb,
    actor: str,
    credential: str | None,
    digest: str | None,
    workflow_id: str,
    now: datetime,
    used_token_ids: dict[str, int],
) -> CommandVerdict:
    """Whether ``actor`` (proven by ``credential``) may ask ``verb`` of the agent now."""
    settings = config.approval
    allowed = settings.roles_for(verb)
    if credential is None:
        if not settings.allow_unsigned:
            how = (
                "`aiops config apply FILE --key KEY` signs"
                if verb == AgentVerb.RECONFIGURE
                else f"`aiops agents {verb.value} {config.id} --key FILE` signs; `aiops agents token "
                f"{config.id} {verb.value}` prints JSON for the Web UI or the temporal CLI"
            )
            return CommandVerdict(
                reason=f"{actor or 'an anonymous sender'}'s {verb.value} is not signed: send a token in "
                f"'credential' ({how})",
                actor=actor,
            )
        if not settings.approvers:  # dev mode and nobody configured yet: first steps
            return CommandVerdict(actor=actor or "anonymous")
        approver = settings.approver(actor)
        if approver is None:
            known = ", ".join(a.name for a in settings.approvers)
            return CommandVerdict(
                reason=f"unknown approver {actor!r} may not {verb.value} this agent (known: {known})",
                actor=actor,
            )
        return CommandVerdict(reason=_role_refusal(actor, approver.roles, allowed, verb, config), actor=actor)
    if len(used_token_ids) >= MAX_USED_COMMAND_TOKENS:
        return CommandVerdict(
            reason=f"this agent took {MAX_USED_COMMAND_TOKENS} signed commands in a day; try again later",
            actor=actor,
        )
    keys = {a.name: a.public_key for a in settings.approvers if a.public_key}
    token_verb: Verb = verb.value
    try:
        who = verify_identity(
            credential, keys, settings.issuers, workflow_id, token_verb, digest, now, set(used_token_ids)
        )
    except TokenRefused as err:
        return CommandVerdict(reason=str(err), actor=actor)
    if actor and who.name != actor:
        return CommandVerdict(
            reason=f"the token is signed by {who.name}, but the command names {actor}", actor=actor
        )
    return CommandVerdict(
        reason=_role_refusal(who.name, identity_roles(config, who), allowed, verb, config),
        actor=who.name,
        authenticated=True,
        token_id=who.claims.jti,
        token_expires=who.claims.exp,
        issuer=who.issuer,
    )


def _role_refusal(
    name: str, roles: list[str], allowed: list[str], verb: AgentVerb, config: AgentConfig
) -> str | None:
    if set(allowed).intersection(roles):
        return None
    return (
        f"{name} may not {verb.value} agent {config.id}: needs one of the roles {sorted(allowed)} "
        f"(approval.command_roles), has {sorted(roles)}"
    )


def forget_expired(used_token_ids: dict[str, int], now: datetime) -> None:
    """Drop the token ids that can no longer be replayed (expired), keeping the set bounded."""
    moment = int(now.timestamp())
    for token_id in [t for t, expires in used_token_ids.items() if expires <= moment]:
        del used_token_ids[token_id]
