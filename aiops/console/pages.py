"""The console's pages: sign-in, the inbox, an action's evidence and decision, passkey enrollment.

Server-rendered (Jinja2, autoescaped); the one script (``static/console.js``) does only what a
form cannot: the passkey ceremonies, against the API's own ``/v1`` endpoints. Deciding without
a passkey works with no script at all: the action page's form takes a decision token signed
elsewhere (``aiops approvals token``) and relays it, as the API does. Nothing here signs.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.service import RPCError

from aiops.api.app import Buckets, one_line, status_of
from aiops.api.auth import Principal, has_role
from aiops.client.errors import ActionNotFoundError
from aiops.contracts.action import ActionRecord, DecisionRequest
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import RiskLevel
from aiops.contracts.operator_message import MAX_CREDENTIAL, MAX_TEXT

from . import one_touch, passkey_signin, views
from .app import ConsoleState, cookies_of
from .oidc import SignInRefused
from .session import FLOW_SECONDS, CookieNames, Session, SessionRefused, csrf_matches, new_session

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
ACTION_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,500}$")
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Where a sign-in may lead back to: a console page of this origin (an approval notice's link),
# never another site ("//host", "/\\host") or a script URL.
NEXT = re.compile(r"^/console/(?![/\\])[A-Za-z0-9_.:@%/?=&+-]{0,600}$")
HOME = "/console/"


def safe_next(value: object) -> str:
    return value if isinstance(value, str) and NEXT.match(value) and "//" not in value else HOME


templates = Environment(
    loader=PackageLoader("aiops.console", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Refused(AiopsError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    page = templates.get_template(name).render(**values)
    return HTMLResponse(page, status, headers={"cache-control": "no-store"})


def _settings(request: Request) -> Any:
    settings = _state(request).settings()
    if settings is None:
        raise Refused(404, "the console is off: add `api.console` to the gateway config (docs/console.md)")
    return settings


def _session(request: Request) -> Session | None:
    try:
        return _state(request).session_of(cookies_of(request.scope))
    except SessionRefused:
        return None


async def _person(request: Request, needed: str = "viewer") -> Session:
    """The signed-in person holding ``needed``; a refusal (audited) otherwise."""
    _settings(request)
    session = _session(request)
    api = _state(request).api()
    assert api is not None  # _settings checked it
    limiter: Buckets = request.app.state.limiter
    key = f"console:{session.principal.name}" if session else f"console-address:{_remote(request)}"
    if limiter.take(key, api.rate_limit):
        raise Refused(429, "over the console's rate limit; wait a moment and reload")
    if session is None:
        raise Refused(401, "sign in first")
    if not has_role(session.principal, needed, api.decide_roles):
        roles = ", ".join(session.principal.roles) or "no roles"
        wanted = f"one of {', '.join(api.decide_roles)}" if needed == "decide" else f"{needed} or above"
        who = session.principal.name
        reason = f"{who} ({roles}) may not {request.method} {request.url.path}: it takes {wanted}"
        await _state(request).refused(
            session.principal.name, request.method, request.url.path, 403, reason, _remote(request)
        )
        raise Refused(403, reason)
    return session


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


async def _check_csrf(request: Request, session: Session, form: Any) -> None:
    if not csrf_matches(session, form.get("csrf")):
        reason = f"the form's CSRF token is missing or wrong for {session.principal.name}: reload the page"
        await _state(request).refused(
            session.principal.name, request.method, request.url.path, 403, reason, _remote(request)
        )
        raise Refused(403, reason)


# ----- sign-in ----------------------------------------------------------------------------------


async def signin(request: Request) -> Response:
    settings = _settings(request)
    why = request.query_params.get("why", "")[:300]
    target = safe_next(request.query_params.get("next"))
    return render("signin.html", issuer=settings.issuer, me=None, error=why, next=target)


async def signin_oidc(request: Request) -> Response:
    settings = _settings(request)
    state = _state(request)
    url, flow = await state.oidc.begin(settings, _client_secret(settings))
    flow["next"] = safe_next(request.query_params.get("next"))
    answer = RedirectResponse(url, 303)
    names = CookieNames(settings.public_url)
    cookie = state.signer(settings).dump("sign-in", flow)
    answer.set_cookie(names.flow, cookie, **names.attributes("lax", FLOW_SECONDS))
    return answer


def _client_secret(settings: Any) -> str | None:
    return os.environ.get(settings.client_secret_env) if settings.client_secret_env else None


async def signin_callback(request: Request) -> Response:
    settings = _settings(request)
    state = _state(request)
    names = CookieNames(settings.public_url)
    query = {k: v[:2000] for k, v in request.query_params.items()}
    try:
        cookie = request.cookies.get(names.flow)
        if not cookie:
            raise SignInRefused("this browser has no sign-in under way (cookies off, or over 10 minutes)")
        flow = state.signer(settings).load("sign-in", cookie)
        api = state.api()
        assert api is not None
        principal = await state.oidc.finish(settings, _client_secret(settings), api.issuers, flow, query)
    except SessionRefused as err:
        await state.refused("", "GET", request.url.path, 401, str(err), _remote(request))
        answer = render("signin.html", 401, issuer=settings.issuer, me=None, error=str(err))
        answer.delete_cookie(names.flow, path="/")
        return answer
    return _signed_in(settings, state, principal, safe_next(flow.get("next")))


def _signed_in(settings: Any, state: ConsoleState, principal: Principal, target: str) -> Response:
    """Set the session and go on (to the inbox, or the page the sign-in started from) from a page
    of our own: a redirect straight from the identity provider's cross-site navigation would not
    carry the SameSite=Strict cookie."""
    page = render("signed_in.html", me=principal, next=target)
    return _open_session(page, settings, state, principal)


def _open_session(answer: Response, settings: Any, state: ConsoleState, principal: Principal) -> Response:
    names = CookieNames(settings.public_url)
    session = new_session(principal, settings.session_hours)
    cookie = state.signer(settings).dump("session", session.model_dump(mode="json"))
    answer.set_cookie(names.session, cookie, **names.attributes("strict", int(settings.session_hours * 3600)))
    answer.delete_cookie(names.flow, path="/")
    return answer


async def _json(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "send JSON (Content-Type: application/json)")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


async def _passkey_keys(request: Request, name: str) -> list[passkey_signin.Registered]:
    state = _state(request)
    configs = await passkey_signin.known_configs(await state.host.aiops(), state.host.loaded.agent_configs)
    return passkey_signin.registered(name, configs)


async def signin_passkey_options(request: Request) -> JSONResponse:
    """The challenge for a passkey sign-in as ``name``; the flow is kept in this browser's cookie."""
    settings = _settings(request)
    state = _state(request)
    api = state.api()
    assert api is not None
    if request.app.state.limiter.take(f"console-address:{_remote(request)}", api.rate_limit):
        raise Refused(429, "over the console's rate limit; wait a moment")
    body = await _json(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not re.fullmatch(passkey_signin.NAME_PATTERN, name):
        raise Refused(422, "name the person signing in (1 to 200 characters)")
    try:
        options, flow = request.app.state.passkeys.options(name, await _passkey_keys(request, name))
        flow["next"] = safe_next(body.get("next"))
    except passkey_signin.PasskeySignInRefused as err:
        await state.refused(name, "POST", request.url.path, 401, str(err), _remote(request))
        return JSONResponse({"error": str(err)}, 401)
    answer = JSONResponse(options)
    names = CookieNames(settings.public_url)
    cookie = state.signer(settings).dump("passkey sign-in", flow)
    answer.set_cookie(names.flow, cookie, **names.attributes("lax", FLOW_SECONDS))
    return answer


async def signin_passkey(request: Request) -> Response:
    """Verify the passkey's assertion and open the session; the script then goes to the inbox."""
    settings = _settings(request)
    state = _state(request)
    names = CookieNames(settings.public_url)
    who = ""
    try:
        try:
            assertion = passkey_signin.SignInAssertion.model_validate(await _json(request))
        except ValidationError:
            raise passkey_signin.PasskeySignInRefused("the passkey sign-in is malformed") from None
        who = assertion.name
        cookie = request.cookies.get(names.flow)
        if not cookie:
            raise passkey_signin.PasskeySignInRefused("this browser has no passkey sign-in under way")
        flow = state.signer(settings).load("passkey sign-in", cookie)
        keys = await _passkey_keys(request, assertion.name)
        principal = request.app.state.passkeys.verify(flow, assertion, keys)
    except SessionRefused as err:
        await state.refused(who, "POST", request.url.path, 401, str(err), _remote(request))
        answer: Response = JSONResponse({"error": str(err)}, 401)
        answer.delete_cookie(names.flow, path="/")
        return answer
    answer = JSONResponse({"next": safe_next(flow.get("next"))})
    return _open_session(answer, settings, state, principal)


async def signout(request: Request) -> Response:
    settings = _settings(request)
    session = _session(request)
    if session is not None:
        await _check_csrf(request, session, await request.form())
    answer = RedirectResponse("/console/signin", 303)
    answer.delete_cookie(CookieNames(settings.public_url).session, path="/")
    return answer


# ----- the inbox and an action ------------------------------------------------------------------


async def inbox(request: Request) -> Response:
    session = await _person(request)
    agent = request.query_params.get("agent", "")
    risk = request.query_params.get("risk", "")
    if agent and not AGENT_ID.match(agent):
        raise Refused(400, "the agent filter is not an agent id")
    if risk and risk not in views.RISKS:
        raise Refused(400, f"the risk filter must be one of {', '.join(views.RISKS)}")
    client = await _state(request).host.aiops()
    found = await client.approvals.inbox(agent or None)
    if risk:
        found = [(i, r) for i, r in found if r.action.risk_level == RiskLevel(risk)]
    return render(
        "inbox.html",
        me=session.principal,
        csrf=session.csrf,
        rows=views.inbox_rows(found, datetime.now(UTC)),
        agent=agent,
        risk=risk,
        risks=views.RISKS,
    )


async def _record(request: Request, action_id: str) -> ActionRecord:
    if not ACTION_ID.match(action_id):
        raise Refused(400, "that is not an action id")
    client = await _state(request).host.aiops()
    try:
        return await client.approvals.action(action_id)
    except ActionNotFoundError as err:
        raise Refused(404, one_line(err)) from None


async def action(request: Request) -> Response:
    if _session(request) is None:  # e.g. from a notice's link: decide with one touch (one_touch.py)
        return await one_touch.signed_out_page(request)
    session = await _person(request)
    action_id = request.path_params["action_id"]
    decided = request.query_params.get("decided", "")
    shown = f"{decided} recorded" if decided in ("approve", "reject") else ""
    return await _action_page(request, session, action_id, await _record(request, action_id), decided=shown)


async def _action_page(
    request: Request, session: Session, action_id: str, record: ActionRecord, status: int = 200, **extra: Any
) -> Response:
    on_expiry = target = None
    try:
        config = (await (await _state(request).host.aiops()).agents.status(record.action.agent_id)).config
        on_expiry, target = config.approval.on_expiry.value, config.approval.escalation_target
    except Exception:  # the agent may be gone; the page says the setting is not readable
        pass
    approved, needed = views.approvals_count(record)
    api = _state(request).api()
    after = views.after_deadline(on_expiry, target)
    if record.escalated:
        after = "already escalated: undecided at the deadline, it expires unexecuted"
    return render(
        "action.html",
        status,
        me=session.principal,
        csrf=session.csrf,
        action_id=action_id,
        record=record,
        summary=views.one_line(record.action.description),
        diagnosis=views.diagnosis_of(record),
        event_data=views.pretty(record.event.data),
        parameters=views.pretty({k: v for k, v in record.action.parameters.items() if k != "diagnosis"}),
        approved=approved,
        needed=needed,
        deadline=views._when(record.approval_deadline, datetime.now(UTC)),
        after_deadline=after,
        decidable=views.decidable(record),
        may_decide=api is not None and has_role(session.principal, "decide", api.decide_roles),
        **extra,
    )


async def decide(request: Request) -> Response:
    """The no-script path: a decision token signed elsewhere, relayed as the API relays it."""
    session = await _person(request, "decide")
    form = await request.form()
    await _check_csrf(request, session, form)
    action_id = request.path_params["action_id"]
    record = await _record(request, action_id)
    verb = str(form.get("verb", ""))
    credential = str(form.get("credential", "")).strip()
    comment = str(form.get("comment", ""))[:MAX_TEXT]
    if verb not in ("approve", "reject"):
        raise Refused(400, "the decision must be approve or reject")
    if not credential or len(credential) > MAX_CREDENTIAL:
        return await _action_page(
            request, session, action_id, record, 400, refusal="paste a signed decision token or use a passkey"
        )
    decision = DecisionRequest(
        approve=verb == "approve",
        approver=session.principal.name,
        comment=comment,
        plan_digest=str(form.get("plan_digest", "")) or None,
        credential=credential,
    )
    client = await _state(request).host.aiops()
    try:
        record = await client.approvals.decide(action_id, decision)
    except AiopsError as err:
        said = one_line(err).removeprefix("refused: ")
        return await _action_page(request, session, action_id, record, status_of(err), refusal=said)
    # Post/redirect/get: reloading the page shows the action again, never decides twice.
    return RedirectResponse(f"/console/actions/{quote(action_id, safe=':@')}?decided={verb}", 303)


async def passkeys(request: Request) -> Response:
    session = await _person(request)
    return render("passkeys.html", me=session.principal, csrf=session.csrf)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise Refused(404, f"no such file: {one_line(name, 100)}")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})


async def home(request: Request) -> Response:
    return RedirectResponse("/console/", 303)


def _refused(request: Request, err: Exception) -> Response:
    if isinstance(err, RPCError):
        err = Refused(503, one_line(f"Temporal refused or failed: {err}"))
    elif not isinstance(err, Refused):  # the client's or the sign-in's own errors: their line, status
        status = 503 if isinstance(err, SessionRefused) else status_of(err)
        err = Refused(status, one_line(err))
    if err.status == 401:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = {"why": err.reason, "next": safe_next(back) if request.method == "GET" else HOME}
        return RedirectResponse("/console/signin?" + urlencode(query), 303)
    session = _session(request)
    me = session.principal if session else None
    return render("error.html", err.status, me=me, csrf=session.csrf if session else "", error=err.reason)


def build(state: ConsoleState) -> Starlette:
    app = Starlette(
        routes=[
            Route("/console", home),
            Route("/console/", inbox),
            Route("/console/signin", signin),
            Route("/console/signin/oidc", signin_oidc),
            Route("/console/signin/callback", signin_callback),
            Route("/console/signin/passkey-options", signin_passkey_options, methods=["POST"]),
            Route("/console/signin/passkey", signin_passkey, methods=["POST"]),
            Route("/console/signout", signout, methods=["POST"]),
            Route("/console/passkeys", passkeys),
            *one_touch.routes(),
            Route("/console/actions/{action_id:path}/decide", decide, methods=["POST"]),
            Route("/console/actions/{action_id:path}", action),
            Route("/console/static/{name}", static),
        ],
        exception_handlers={AiopsError: _refused, RPCError: _refused},
    )
    app.state.console = state
    app.state.limiter = Buckets()
    app.state.passkeys = passkey_signin.PasskeySignIn()
    return app
