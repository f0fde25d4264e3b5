"""The console's pages: the inbox, an action's evidence and decision, passkey enrollment (sign-in:
``signin_pages.py``).

Server-rendered (Jinja2, autoescaped); the one script (``static/console.js``) does only what a
form cannot: the passkey ceremonies, against the API's own ``/v1`` endpoints. Deciding without
a passkey works with no script at all: the action page's form takes a decision token signed
elsewhere (``aiops approvals token``) and relays it, as the API does. Nothing here signs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.service import RPCError

from aiops.api.app import Buckets, one_line, status_of
from aiops.api.auth import has_role
from aiops.client.errors import ActionNotFoundError
from aiops.contracts.action import ActionRecord, DecisionRequest
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import RiskLevel
from aiops.contracts.operator_message import MAX_CREDENTIAL, MAX_TEXT

from . import one_touch, passkey_signin, views
from .app import ConsoleState
from .session import Session, SessionRefused
from .signin_pages import (
    signin,
    signin_callback,
    signin_oidc,
    signin_passkey,
    signin_passkey_options,
    signin_token,
    signout,
)
from .web import HOME, Refused, check_csrf, person, render, safe_next, session_now, state_of

__all__ = ["HOME", "build", "render", "safe_next"]

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
ACTION_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,500}$")
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ----- the inbox and an action ------------------------------------------------------------------


async def inbox(request: Request) -> Response:
    session = await person(request)
    agent = request.query_params.get("agent", "")
    risk = request.query_params.get("risk", "")
    if agent and not AGENT_ID.match(agent):
        raise Refused(400, "the agent filter is not an agent id")
    if risk and risk not in views.RISKS:
        raise Refused(400, f"the risk filter must be one of {', '.join(views.RISKS)}")
    client = await state_of(request).host.aiops()
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
    client = await state_of(request).host.aiops()
    try:
        return await client.approvals.action(action_id)
    except ActionNotFoundError as err:
        raise Refused(404, one_line(err)) from None


async def action(request: Request) -> Response:
    if session_now(request) is None:  # e.g. from a notice's link: decide with one touch (one_touch.py)
        return await one_touch.signed_out_page(request)
    session = await person(request)
    action_id = request.path_params["action_id"]
    decided = request.query_params.get("decided", "")
    shown = f"{decided} recorded" if decided in ("approve", "reject") else ""
    return await _action_page(request, session, action_id, await _record(request, action_id), decided=shown)


async def _action_page(
    request: Request, session: Session, action_id: str, record: ActionRecord, status: int = 200, **extra: Any
) -> Response:
    on_expiry = target = None
    try:
        config = (await (await state_of(request).host.aiops()).agents.status(record.action.agent_id)).config
        on_expiry, target = config.approval.on_expiry.value, config.approval.escalation_target
    except Exception:  # the agent may be gone; the page says the setting is not readable
        pass
    approved, needed = views.approvals_count(record)
    api = state_of(request).api()
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
    session = await person(request, "decide")
    form = await request.form()
    await check_csrf(request, session, form)
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
    client = await state_of(request).host.aiops()
    try:
        record = await client.approvals.decide(action_id, decision)
    except AiopsError as err:
        said = one_line(err).removeprefix("refused: ")
        return await _action_page(request, session, action_id, record, status_of(err), refusal=said)
    # Post/redirect/get: reloading the page shows the action again, never decides twice.
    return RedirectResponse(f"/console/actions/{quote(action_id, safe=':@')}?decided={verb}", 303)


async def passkeys(request: Request) -> Response:
    session = await person(request)
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
    session = session_now(request)
    me = session.principal if session else None
    return render("error.html", err.status, me=me, csrf=session.csrf if session else "", error=err.reason)


def build(state: ConsoleState) -> Starlette:
    app = Starlette(
        routes=[
            Route("/console", home),
            Route("/console/", inbox),
            Route("/console/signin", signin),
            Route("/console/signin/token", signin_token, methods=["POST"]),
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
