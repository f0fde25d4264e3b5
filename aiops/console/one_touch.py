"""One touch from an approval notice's link to a decided action: the decision's assertion signs in.

Signed out, an action's page (``/console/actions/ID``, where a notice's link leads) asks for the
approver's name beside "Approve with passkey" / "Reject with passkey". The browser then asks
``POST /console/actions/ID/passkey-options`` for the decision's claims (this action, the verb,
its current plan digest, ``sub`` the name, an expiry, a fresh nonce) and their challenge
(SHA-256 of the claims, ``aiops.contracts.passkey``), exactly what the API's
``/v1/actions/ID/passkey-challenge`` hands a signed-in approver, from the config the action
pinned. The claims, the relying party and a CSRF token are kept in this browser's signed flow
cookie (``SameSite=Lax``, expiring with the claims); the browser makes ONE assertion and posts it
to ``POST /console/actions/ID/passkey-decision`` with the token in ``X-CSRF-Token``. There:

1. the console verifies the assertion itself, as passkey sign-in does (``passkey_signin``): a
   passkey registered to that name in the running agents' configs, the relying party, the
   origin, user verification, and the challenge of the claims this console issued (from the
   cookie, never from the browser), used once in this process. That signs the person in (the
   passkey sign-in's session: viewer and approver);
2. the same assertion, with the cookie's claims, is relayed as the decision's credential to the
   action's workflow, which verifies it again against the pinned config and decides.

A refused assertion signs nobody in, relays nothing and is audited (``api_refusals``), as every
refusal of the sign-in is. Nothing here signs: without the person's passkey the claims are worth
nothing. The page shown signed out carries no evidence (the notice that led there carries the
summary, the plan and its digest, which the page repeats from the claims before the touch);
signing in first shows it, and a signed-in approver decides with one touch through ``/v1``.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiops.api.app import Context, one_line, status_of
from aiops.api.passkeys import CHALLENGE_LIFETIME_SECONDS, TIMEOUT_MS, pinned_config
from aiops.client.errors import ActionNotFoundError
from aiops.contracts.action import ActionStatus, DecisionRequest
from aiops.contracts.errors import AiopsError
from aiops.contracts.operator_message import MAX_TEXT
from aiops.contracts.passkey import (
    B64URL,
    MAX_CREDENTIAL_ID,
    PasskeyAssertion,
    PasskeyClaims,
    b64url,
    passkey_challenge,
)

# pages.py and this module import each other; each uses the other's names only when called.
from . import pages
from .passkey_signin import NAME_PATTERN, PasskeySignInRefused, SignInAssertion
from .session import CSRF_HEADER, CookieNames, SessionRefused

FLOW_KIND = "passkey decision"


class OneTouchRefused(PasskeySignInRefused):
    """A one-touch decision that cannot go on; the message says why."""


class OneTouchAssertion(BaseModel):
    """What the console's script posts after its one ``navigator.credentials.get`` (base64url)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    credential_id: str = Field(min_length=16, max_length=MAX_CREDENTIAL_ID, pattern=B64URL)
    authenticator_data: str = Field(min_length=49, max_length=2048, pattern=B64URL)
    client_data_json: str = Field(min_length=20, max_length=3000, pattern=B64URL)
    signature: str = Field(min_length=16, max_length=1400, pattern=B64URL)
    user_handle: str | None = Field(default=None, max_length=100, pattern=B64URL)
    comment: str = Field(default="", max_length=MAX_TEXT)


def page_of(action_id: str, verb: str = "") -> str:
    return f"/console/actions/{quote(action_id, safe=':@')}" + (f"?decided={verb}" if verb else "")


async def signed_out_page(request: Request) -> Response:
    """An action's page for someone not signed in: the name, the comment, the two buttons."""
    pages._settings(request)
    action_id = request.path_params["action_id"]
    if not pages.ACTION_ID.match(action_id):
        raise pages.Refused(400, "that is not an action id")
    return pages.render("one_touch.html", me=None, action_id=action_id, next=page_of(action_id))


async def _limited(request: Request) -> None:
    api = pages._state(request).api()
    assert api is not None  # _settings checked it
    if request.app.state.limiter.take(f"console-address:{pages._remote(request)}", api.rate_limit):
        raise pages.Refused(429, "over the console's rate limit; wait a moment")


async def _claims(request: Request, action_id: str, name: str, verb: str) -> tuple[PasskeyClaims, Any]:
    """The claims ``name`` may sign on this action and the pinned approval settings; or why not.

    A name without a passkey in the running configs is refused before the action is looked up:
    someone signed out learns nothing of an action (that it exists, its status, its digest)
    without naming an approver."""
    if not await pages._passkey_keys(request, name):
        raise OneTouchRefused(
            f"{name[:80]!r} has no registered passkey in the running agents' configs: sign in with "
            "the identity provider, enroll one (Passkeys), and have an admin add its line"
        )
    client = await pages._state(request).host.aiops()
    try:
        record = await client.approvals.action(action_id)
    except ActionNotFoundError:
        raise OneTouchRefused(f"there is no action {action_id[:120]!r}") from None
    if record.status != ActionStatus.PENDING_APPROVAL:
        status = record.status.value
        raise OneTouchRefused(f"action {action_id} is no longer pending approval (it is {status})")
    settings = (await pinned_config(Context(pages._state(request).host), action_id)).approval
    approver = settings.approver(name)
    if approver is None or not approver.passkeys or not settings.passkey_rp_id:
        raise OneTouchRefused(
            f"{name[:80]!r} has no registered passkey in the config action {action_id} was decided under: "
            "sign in with the identity provider, enroll one (Passkeys), and have an admin add its line"
        )
    claims = PasskeyClaims(
        aud=action_id,
        verb=verb,  # checked by the caller: approve or reject
        digest=record.plan_digest if verb == "approve" else None,
        sub=name,
        exp=int(datetime.now(UTC).timestamp()) + CHALLENGE_LIFETIME_SECONDS,
        nonce=b64url(secrets.token_bytes(18)),
    )
    return claims, settings


async def options(request: Request) -> JSONResponse:
    """The decision's claims and challenge for the named person; the flow goes in the cookie."""
    settings = pages._settings(request)
    state = pages._state(request)
    await _limited(request)
    action_id = request.path_params["action_id"]
    if not pages.ACTION_ID.match(action_id):
        raise pages.Refused(400, "that is not an action id")
    body = await pages._json(request)
    name = body.get("name") if isinstance(body, dict) else None
    verb = body.get("verb") if isinstance(body, dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise pages.Refused(422, "name the person deciding (1 to 200 characters)")
    if verb not in ("approve", "reject"):
        raise pages.Refused(422, "the decision must be approve or reject")
    try:
        claims, approval = await _claims(request, action_id, name, verb)
    except OneTouchRefused as err:
        await state.refused(name, "POST", request.url.path, 401, str(err), pages._remote(request))
        return JSONResponse({"error": str(err)}, 401)
    csrf = secrets.token_urlsafe(24)
    flow = {
        "name": name,
        "claims": claims.model_dump(mode="json"),
        "rp_id": approval.passkey_rp_id,
        "csrf": csrf,
        "expires": claims.exp,
    }
    approver = approval.approver(name)
    answer = JSONResponse(
        {
            "claims": flow["claims"],
            "challenge": b64url(passkey_challenge(claims)),
            "rp_id": approval.passkey_rp_id,
            "allow_credentials": [p.id for p in approver.passkeys],
            "timeout_ms": TIMEOUT_MS,
            "csrf": csrf,
        }
    )
    names = CookieNames(settings.public_url)
    cookie = state.signer(settings).dump(FLOW_KIND, flow)
    answer.set_cookie(names.flow, cookie, **names.attributes("lax", CHALLENGE_LIFETIME_SECONDS))
    return answer


def _verified(request: Request, flow: dict[str, Any], assertion: OneTouchAssertion, keys: Any) -> Any:
    """The claims and the person the assertion proves (the sign-in's own checks), or a refusal."""
    offered = request.headers.get(CSRF_HEADER, "")
    if not offered or not hmac.compare_digest(str(flow.get("csrf", "")).encode(), offered.encode()):
        raise OneTouchRefused("the decision's CSRF token is missing or wrong: reload the page and try again")
    try:
        claims = PasskeyClaims.model_validate(flow.get("claims"))
    except ValidationError:
        raise OneTouchRefused("the passkey decision under way is not readable; start again") from None
    action_id = request.path_params["action_id"]
    if claims.aud != action_id:
        raise OneTouchRefused(f"the passkey decision under way is for another action ({claims.aud[:120]})")
    signed = SignInAssertion(name=claims.sub, **assertion.model_dump(exclude={"comment"}))
    challenge = b64url(passkey_challenge(claims))
    asked = {"name": claims.sub, "challenge": challenge, "rp_id": flow.get("rp_id")}
    return claims, request.app.state.passkeys.verify(asked, signed, keys)


async def decide(request: Request) -> Response:
    """Verify the one assertion (signing the person in), then relay it as the decision."""
    settings = pages._settings(request)
    state = pages._state(request)
    await _limited(request)
    names = CookieNames(settings.public_url)
    who = ""
    try:
        try:
            assertion = OneTouchAssertion.model_validate(await pages._json(request))
        except ValidationError:
            raise OneTouchRefused("the passkey decision is malformed") from None
        cookie = request.cookies.get(names.flow)
        if not cookie:
            raise OneTouchRefused("this browser has no passkey decision under way (cookies off, or expired)")
        flow = state.signer(settings).load(FLOW_KIND, cookie)
        who = str(flow.get("name", ""))[:200]
        keys = await pages._passkey_keys(request, who)
        claims, principal = _verified(request, flow, assertion, keys)
    except SessionRefused as err:
        await state.refused(who, "POST", request.url.path, 401, str(err), pages._remote(request))
        refused: Response = JSONResponse({"error": str(err)}, 401)
        refused.delete_cookie(names.flow, path="/")
        return refused
    credential = PasskeyAssertion(claims=claims, **assertion.model_dump(exclude={"comment"})).envelope()
    decision = DecisionRequest(
        approve=claims.verb == "approve",
        approver=claims.sub,
        comment=assertion.comment,
        plan_digest=claims.digest,
        credential=credential,
    )
    try:
        await (await state.host.aiops()).approvals.decide(claims.aud, decision)
        answer: Response = JSONResponse({"next": page_of(claims.aud, claims.verb)})
    except AiopsError as err:  # the workflow's refusal: signed in all the same, the page says why
        said = one_line(err).removeprefix("refused: ")
        answer = JSONResponse({"error": said, "next": page_of(claims.aud)}, status_of(err))
    return pages._open_session(answer, settings, state, principal)


def routes() -> list[Route]:
    return [
        Route("/console/actions/{action_id:path}/passkey-options", options, methods=["POST"]),
        Route("/console/actions/{action_id:path}/passkey-decision", decide, methods=["POST"]),
    ]
