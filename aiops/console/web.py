"""What the console's pages share: rendering, refusals, the signed-in person and their checks.

Split from ``pages.py`` (the inbox and actions) and ``signin_pages.py`` (the ways in) so each
stays small; nothing here handles a route.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from aiops.api.app import Buckets
from aiops.api.auth import has_role
from aiops.contracts.errors import AiopsError

from .app import ConsoleState, cookies_of
from .session import Session, SessionRefused, csrf_matches
from .token_signin import TokenSignInRefused, TokenUnchecked

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


def state_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    page = templates.get_template(name).render(**values)
    return HTMLResponse(page, status, headers={"cache-control": "no-store"})


def settings_of(request: Request) -> Any:
    settings = state_of(request).settings()
    if settings is None:
        raise Refused(404, "the console is off: add `api.console` to the gateway config (docs/console.md)")
    return settings


def session_now(request: Request) -> Session | None:
    try:
        return state_of(request).session_of(cookies_of(request.scope))
    except SessionRefused:
        return None


async def person(request: Request, needed: str = "viewer") -> Session:
    """The signed-in person holding ``needed``; a refusal (audited) otherwise."""
    settings_of(request)
    session = session_now(request)
    api = state_of(request).api()
    assert api is not None  # _settings checked it
    limiter: Buckets = request.app.state.limiter
    key = f"console:{session.principal.name}" if session else f"console-address:{remote(request)}"
    if limiter.take(key, api.rate_limit):
        raise Refused(429, "over the console's rate limit; wait a moment and reload")
    if session is None:
        raise Refused(401, "sign in first")
    try:
        await state_of(request).still_signed_in(session, request.method, request.url.path, remote(request))
    except TokenSignInRefused as err:  # revoked or expired since: back to the sign-in, audited
        raise Refused(401, str(err)) from None
    except TokenUnchecked as err:
        raise Refused(503, str(err)) from None
    if not has_role(session.principal, needed, api.decide_roles):
        roles = ", ".join(session.principal.roles) or "no roles"
        wanted = f"one of {', '.join(api.decide_roles)}" if needed == "decide" else f"{needed} or above"
        who = session.principal.name
        reason = f"{who} ({roles}) may not {request.method} {request.url.path}: it takes {wanted}"
        await state_of(request).refused(
            session.principal.name, request.method, request.url.path, 403, reason, remote(request)
        )
        raise Refused(403, reason)
    return session


def remote(request: Request) -> str:
    return request.client.host if request.client else ""


def limit_address(request: Request) -> None:
    """The rate limit of a caller not signed in yet, by address (sign-in and one-touch posts)."""
    api = state_of(request).api()
    assert api is not None  # settings_of checked it
    if request.app.state.limiter.take(f"console-address:{remote(request)}", api.rate_limit):
        raise Refused(429, "over the console's rate limit; wait a moment")


async def read_json(request: Request) -> Any:
    """A script's JSON body; anything else is refused with what was wrong."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "send JSON (Content-Type: application/json)")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


async def check_csrf(request: Request, session: Session, form: Any) -> None:
    if not csrf_matches(session, form.get("csrf")):
        reason = f"the form's CSRF token is missing or wrong for {session.principal.name}: reload the page"
        await state_of(request).refused(
            session.principal.name, request.method, request.url.path, 403, reason, remote(request)
        )
        raise Refused(403, reason)
