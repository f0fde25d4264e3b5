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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import Field, ValidationError
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
    PasskeyAssertion,
    PasskeyClaims,
    SignedAssertion,
    b64url,
    passkey_challenge,
)

from .app import ConsoleState
from .passkey_signin import (
    NAME_PATTERN,
    PasskeySignInRefused,
    Registered,
    SignInAssertion,
    known_configs,
    registered,
)
from .session import CSRF_HEADER, CookieNames, SessionRefused, new_session
from .web import Refused, limit_address, read_json, remote, render, settings_of, state_of

FLOW_KIND = "passkey decision"
ACTION_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,500}$")


class OneTouchRefused(PasskeySignInRefused):
    """A one-touch decision that cannot go on; the message says why."""


class OneTouchAssertion(SignedAssertion):
    """What the console's script posts after its one ``navigator.credentials.get``, with the
    decision's comment."""

    comment: str = Field(default="", max_length=MAX_TEXT)


def page_of(action_id: str, verb: str = "") -> str:
    return f"/console/actions/{quote(action_id, safe=':@')}" + (f"?decided={verb}" if verb else "")


def _console(request: Request) -> tuple[ConsoleState, Any]:
    return state_of(request), settings_of(request)


def _action_id(request: Request) -> str:
    action_id: str = request.path_params["action_id"]
    if not ACTION_ID.match(action_id):
        raise Refused(400, "that is not an action id")
    return action_id


async def signed_out_page(request: Request) -> Response:
    """An action's page for someone not signed in: the name, the comment, the two buttons."""
    try:
        _console(request)
        action_id = _action_id(request)
    except Refused as err:
        return render("error.html", err.status, me=None, csrf="", error=err.reason)
    return render("one_touch.html", me=None, action_id=action_id, next=page_of(action_id))


async def _keys(state: ConsoleState, name: str) -> list[Registered]:
    """``name``'s passkeys in the running agents' configs: those passkey sign-in accepts."""
    return registered(name, await known_configs(await state.host.aiops(), state.host.loaded.agent_configs))


def _open_session(answer: Response, settings: Any, state: ConsoleState, principal: Any) -> Response:
    """The passkey sign-in's session (its principal: viewer and approver), the flow cookie gone."""
    names = CookieNames(settings.public_url)
    session = new_session(principal, settings.session_hours)
    cookie = state.signer(settings).dump("session", session.model_dump(mode="json"))
    answer.set_cookie(names.session, cookie, **names.attributes("strict", int(settings.session_hours * 3600)))
    answer.delete_cookie(names.flow, path="/")
    return answer


def _answered(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint whose ``Refused`` is answered ``{"error": reason}`` (what the script shows)."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as err:
            return JSONResponse({"error": err.reason}, err.status)

    return answer


async def _claims(state: ConsoleState, action_id: str, name: str, verb: str) -> tuple[PasskeyClaims, Any]:
    """The claims ``name`` may sign on this action and the pinned approval settings; or why not.

    A name without a passkey in the running configs is refused before the action is looked up:
    someone signed out learns nothing of an action (that it exists, its status, its digest)
    without naming an approver."""
    if not await _keys(state, name):
        raise OneTouchRefused(
            f"{name[:80]!r} has no registered passkey in the running agents' configs: sign in with "
            "the identity provider, enroll one (Passkeys), and have an admin add its line"
        )
    client = await state.host.aiops()
    try:
        record = await client.approvals.action(action_id)
    except ActionNotFoundError:
        raise OneTouchRefused(f"there is no action {action_id[:120]!r}") from None
    if record.status != ActionStatus.PENDING_APPROVAL:
        status = record.status.value
        raise OneTouchRefused(f"action {action_id} is no longer pending approval (it is {status})")
    settings = (await pinned_config(Context(state.host), action_id)).approval
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


async def options(request: Request) -> Response:
    """The decision's claims and challenge for the named person; the flow goes in the cookie."""
    state, settings = _console(request)
    limit_address(request)
    action_id = _action_id(request)
    body = await read_json(request)
    name = body.get("name") if isinstance(body, dict) else None
    verb = body.get("verb") if isinstance(body, dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise Refused(422, "name the person deciding (1 to 200 characters)")
    if verb not in ("approve", "reject"):
        raise Refused(422, "the decision must be approve or reject")
    try:
        claims, approval = await _claims(state, action_id, name, verb)
    except OneTouchRefused as err:
        await state.refused(name, "POST", request.url.path, 401, str(err), remote(request))
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
    state, settings = _console(request)
    limit_address(request)
    names = CookieNames(settings.public_url)
    who = ""
    try:
        try:
            assertion = OneTouchAssertion.model_validate(await read_json(request))
        except ValidationError:
            raise OneTouchRefused("the passkey decision is malformed") from None
        cookie = request.cookies.get(names.flow)
        if not cookie:
            raise OneTouchRefused("this browser has no passkey decision under way (cookies off, or expired)")
        flow = state.signer(settings).load(FLOW_KIND, cookie)
        who = str(flow.get("name", ""))[:200]
        keys = await _keys(state, who)
        claims, principal = _verified(request, flow, assertion, keys)
    except SessionRefused as err:
        await state.refused(who, "POST", request.url.path, 401, str(err), remote(request))
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
    return _open_session(answer, settings, state, principal)


def routes() -> list[Route]:
    return [
        Route("/console/actions/{action_id:path}/passkey-options", _answered(options), methods=["POST"]),
        Route("/console/actions/{action_id:path}/passkey-decision", _answered(decide), methods=["POST"]),
    ]
