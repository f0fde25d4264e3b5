"""Passkeys through the API: the challenge a decision signs, and enrollment.

* ``POST /v1/actions/{id}/passkey-challenge``: the claims a passkey decision on this action
  signs (this action, the verb, its current plan digest, the caller as approver, an expiry, a
  fresh nonce), their challenge (SHA-256 of their canonical JSON, ``aiops.contracts.passkey``),
  the relying party and the caller's registered credentials, all from the config the action
  pinned. The browser signs with ``navigator.credentials.get`` and sends the ``passkey:``
  envelope to ``POST /v1/actions/{id}/decision``: the workflow verifies it. Nothing is stored
  here, and nothing here can make a decision: the challenge is worthless without the person's
  passkey, and the workflow refuses an assertion whose claims are not this action's.
* ``POST /v1/passkeys/registration-options`` and ``POST /v1/passkeys/registration``: enrollment.
  The options' challenge is HMAC-bound (a key of this process) to the caller, the relying party
  and an expiry, so the API keeps no state; the registration is verified with py_webauthn and
  answered with the line to put under the approver's ``passkeys:`` in the agent config. An
  enrolled passkey proves nothing until an admin adds that line (a config change, signed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.enums.v1 import EventType
from webauthn import generate_registration_options, options_to_json, verify_registration_response
from webauthn.helpers import parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from aiops.api.app import ApiError, Context
from aiops.api.auth import Principal
from aiops.api.models import error_responses
from aiops.api.routes import AGENT_ID_PATTERN, ActionId, _context, _refuse, caller
from aiops.contracts.action import ActionInput, ActionStatus
from aiops.contracts.config import AgentConfig, ApprovalSettings
from aiops.contracts.passkey import (
    MAX_CREDENTIAL_ID,
    PasskeyClaims,
    PasskeyCredential,
    PasskeyError,
    PasskeyVerb,
    b64url,
    b64url_decode,
    passkey_challenge,
)

CHALLENGE_LIFETIME_SECONDS = 300  # the claims' exp: time to touch the passkey and relay it
TIMEOUT_MS = 120_000  # what the browser is told to wait for the person
REGISTRATION_LIFETIME_SECONDS = 600
RP_NAME = "AIOps approvals"
# The key registration challenges are bound with: this process's own, so a gateway restart (or
# another replica) makes outstanding registration options stale; ask for new ones.
_REGISTRATION_KEY = secrets.token_bytes(32)

router = APIRouter(
    prefix="/v1",
    tags=["passkeys"],
    responses=error_responses(
        {
            400: "a registration that does not verify (audited)",
            401: "no usable bearer token (audited)",
            403: "the caller's roles do not allow this (audited)",
            404: "no such action or agent; or the API is off",
            409: "no passkey decision possible now: the action is not pending, or the caller has no "
            "registered passkey, or the config names no relying party (audited)",
            413: "the body is over the size limit",
            422: "the request does not match the schema",
            429: "over the rate limit (see Retry-After)",
            503: "Temporal or PostgreSQL unavailable",
        }
    ),
)
Decider = Annotated[Principal, Depends(caller("decide"))]
AgentQuery = Annotated[str | None, Query(pattern=AGENT_ID_PATTERN)]


class ChallengeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    verb: PasskeyVerb


class PasskeyChallenge(BaseModel):
    """What the browser needs to sign a decision: pass ``challenge`` (base64url-decoded) to
    ``navigator.credentials.get`` with ``rp_id``, ``allow_credentials`` and user verification
    required, then send ``claims`` back beside the assertion (``docs/passkeys.md``)."""

    claims: PasskeyClaims
    challenge: str
    rp_id: str
    allow_credentials: list[str]
    timeout_ms: int


class RegistrationResponse(BaseModel):
    """The browser's ``PublicKeyCredential.toJSON()`` after ``navigator.credentials.create``."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    id: str = Field(min_length=1, max_length=MAX_CREDENTIAL_ID)
    rawId: str = Field(min_length=1, max_length=MAX_CREDENTIAL_ID)
    type: str = Field(max_length=20)
    response: RegistrationAttestation


class RegistrationAttestation(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    clientDataJSON: str = Field(max_length=4000)
    attestationObject: str = Field(max_length=32_000)
    transports: list[str] = Field(default_factory=list, max_length=10)


RegistrationResponse.model_rebuild()


async def pinned_config(context: Context, action_id: str) -> AgentConfig:
    """The config the action was decided under: its workflow's start input, as the workflow
    itself checks decisions against it."""
    client = await context.client()
    handle = client.approvals.action_handle(action_id)
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            break
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [started] = await client.client.data_converter.decode(payloads, [ActionInput])
        if isinstance(started, ActionInput):
            return started.config
        break
    raise ApiError(404, f"action {action_id!r} has no readable start input")


@router.post("/actions/{action_id}/passkey-challenge", response_model=PasskeyChallenge)
async def passkey_challenge_for(
    request: Request, who: Decider, action_id: ActionId, body: ChallengeBody
) -> PasskeyChallenge:
    """The claims (and their challenge) a passkey decision by the caller on this action signs."""
    context = _context(request)
    record = await (await context.client()).approvals.action(action_id)
    if record.status != ActionStatus.PENDING_APPROVAL:
        reason = f"action {action_id} is no longer pending approval (it is {record.status.value})"
        raise await _refuse(request, context, who.name, 409, reason)
    settings = (await pinned_config(context, action_id)).approval
    approver = settings.approver(who.name)
    if approver is None or not approver.passkeys:
        reason = (
            f"{who.name} has no registered passkey in the config action {action_id} was decided under: "
            "enroll one (POST /v1/passkeys/registration-options) and have an admin add the line"
        )
        raise await _refuse(request, context, who.name, 409, reason)
    if not settings.passkey_rp_id:
        raise await _refuse(request, context, who.name, 409, "the config sets no approval.passkey_rp_id")
    claims = PasskeyClaims(
        aud=action_id,
        verb=body.verb,
        digest=record.plan_digest if body.verb == "approve" else None,
        sub=who.name,
        exp=int(datetime.now(UTC).timestamp()) + CHALLENGE_LIFETIME_SECONDS,
        nonce=b64url(secrets.token_bytes(18)),
    )
    return PasskeyChallenge(
        claims=claims,
        challenge=b64url(passkey_challenge(claims)),
        rp_id=settings.passkey_rp_id,
        allow_credentials=[p.id for p in approver.passkeys],
        timeout_ms=TIMEOUT_MS,
    )


# ----- enrollment ------------------------------------------------------------------------------


async def relying_party(request: Request, context: Context, agent_id: str | None) -> tuple[str, list[str]]:
    """The relying party id and origins to enroll for: those of ``agent_id``'s config, or else
    the browser's own origin (its host is the rp id)."""
    if agent_id is not None:
        config = context.host.loaded.agent_configs.get(agent_id)
        if config is None:
            client = await context.client()
            if client.pool is None:
                raise ApiError(404, f"the gateway knows no config of agent {agent_id!r}")
            config = (await client.config.latest(agent_id)).config
        settings: ApprovalSettings = config.approval
        if not settings.passkey_rp_id or not settings.passkey_origins:
            raise ApiError(
                409, f"agent {agent_id}'s config sets no approval.passkey_rp_id and passkey_origins"
            )
        return settings.passkey_rp_id, list(settings.passkey_origins)
    origin = request.headers.get("origin", "")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(origin) > 300:
        raise ApiError(400, "enrolling without ?agent_id= takes the browser's Origin header (https://host)")
    return parts.hostname, [origin]


def _bound_challenge(name: str, rp_id: str, origins: list[str], nonce: bytes, expires: int) -> bytes:
    stamp = struct.pack(">Q", expires)
    message = "\0".join(["aiops-passkey-registration", name, rp_id, "|".join(origins)]).encode()
    mac = hmac.new(_REGISTRATION_KEY, message + b"\0" + nonce + stamp, hashlib.sha256).digest()
    return nonce + stamp + mac


def _check_bound(challenge: bytes, name: str, rp_id: str, origins: list[str]) -> str | None:
    if len(challenge) != 56:
        return "the registration's challenge is not one this API issued"
    nonce, stamp = challenge[:16], challenge[16:24]
    expires = struct.unpack(">Q", stamp)[0]
    if not hmac.compare_digest(challenge, _bound_challenge(name, rp_id, origins, nonce, expires)):
        return (
            f"the registration's challenge was not issued to {name} for {rp_id} by this gateway process: "
            "ask for new options"
        )
    if expires <= datetime.now(UTC).timestamp():
        return "the registration options expired: ask for new ones"
    return None


@router.post("/passkeys/registration-options", response_model=dict[str, Any])
async def registration_options(request: Request, who: Decider, agent_id: AgentQuery = None) -> dict[str, Any]:
    """WebAuthn creation options for the caller: pass them to ``navigator.credentials.create``
    (``PublicKeyCredential.parseCreationOptionsFromJSON``). Without ``agent_id`` the relying
    party is the browser's origin."""
    context = _context(request)
    rp_id, origins = await relying_party(request, context, agent_id)
    expires = int(datetime.now(UTC).timestamp()) + REGISTRATION_LIFETIME_SECONDS
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=who.name,
        user_id=hashlib.sha256(f"aiops-approver:{who.name}".encode()).digest()[:32],
        challenge=_bound_challenge(who.name, rp_id, origins, secrets.token_bytes(16), expires),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    answer: dict[str, Any] = json.loads(options_to_json(options))
    return answer


@router.post("/passkeys/registration", response_model=PasskeyCredential, response_model_exclude_none=True)
async def registration(
    request: Request,
    who: Decider,
    body: RegistrationResponse,
    agent_id: AgentQuery = None,
    label: Annotated[str | None, Query(max_length=100)] = None,
) -> PasskeyCredential:
    """Verify the browser's registration and answer the line for the approver's ``passkeys:``
    (``{"id": ..., "public_key": ...}``); the passkey counts once an admin applies it."""
    context = _context(request)
    rp_id, origins = await relying_party(request, context, agent_id)
    try:
        challenge = parse_client_data_json(b64url_decode(body.response.clientDataJSON)).challenge
    except (WebAuthnException, PasskeyError, ValueError, TypeError):
        raise await _refuse(
            request, context, who.name, 400, "the registration's clientDataJSON is unreadable"
        ) from None
    problem = _check_bound(challenge, who.name, rp_id, origins)
    if problem is not None:
        raise await _refuse(request, context, who.name, 400, problem)
    try:
        verified = verify_registration_response(
            credential=body.model_dump(),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origins,
            require_user_verification=True,
        )
        return PasskeyCredential(
            id=b64url(verified.credential_id), public_key=b64url(verified.credential_public_key), label=label
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as err:
        reason = " ".join(f"the registration does not verify: {err}".split())[:300]
        raise await _refuse(request, context, who.name, 400, reason) from None
