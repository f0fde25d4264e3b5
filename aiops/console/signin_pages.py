"""The console's ways in: the identity provider (OIDC), a personal API token, a passkey; and out.

Each opens the same session (``session.py``): the person, their roles, how they proved it. Every
refused sign-in is answered with its reason and written to ``api_refusals``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from aiops.api.auth import Principal

from . import passkey_signin, token_signin
from .app import ConsoleState
from .oidc import NoIdentityProvider, SignInRefused, provider
from .session import FLOW_SECONDS, CookieNames, SessionRefused, new_session
from .token_signin import TokenSignInRefused
from .web import (
    HOME,
    Refused,
    check_csrf,
    limit_address,
    read_json,
    remote,
    render,
    safe_next,
    session_now,
    settings_of,
    state_of,
)


def _signin_page(
    request: Request, settings: Any, status: int = 200, error: str = "", target: str = HOME
) -> Response:
    """The sign-in page, with a fresh anti-CSRF value for its token form (in its own cookie)."""
    flow = token_signin.form_flow()
    answer = render(
        "signin.html",
        status,
        issuer=settings.issuer,
        me=None,
        error=error,
        next=target,
        form_csrf=flow["csrf"],
    )
    names = CookieNames(settings.public_url)
    cookie = state_of(request).signer(settings).dump(token_signin.FORM_KIND, flow)
    answer.set_cookie(names.form, cookie, **names.attributes("lax", FLOW_SECONDS))
    return answer


async def signin(request: Request) -> Response:
    settings = settings_of(request)
    why = request.query_params.get("why", "")[:300]
    return _signin_page(request, settings, error=why, target=safe_next(request.query_params.get("next")))


async def signin_token(request: Request) -> Response:
    """A pasted personal API token opens a session as its owner, with its roles (a plain form)."""
    settings = settings_of(request)
    state = state_of(request)
    limit_address(request)
    form = await request.form()
    target = safe_next(form.get("next"))
    names = CookieNames(settings.public_url)
    try:
        cookie = request.cookies.get(names.form)
        if not cookie:
            raise TokenSignInRefused(
                "", "this browser has no sign-in form under way (cookies off?): reload it"
            )
        if not token_signin.form_matches(
            state.signer(settings).load(token_signin.FORM_KIND, cookie), form.get("csrf")
        ):
            raise TokenSignInRefused("", "the sign-in form's CSRF token is missing or wrong: reload the page")
        principal, until = await token_signin.sign_in(str(form.get("token", "")), await state.tokens())
    except SessionRefused as err:
        who = err.who if isinstance(err, TokenSignInRefused) else ""
        await state.refused(who, "POST", request.url.path, 401, str(err), remote(request))
        return _signin_page(request, settings, 401, str(err), target)
    answer = render("signed_in.html", me=principal, next=target)
    answer.delete_cookie(names.form, path="/")
    return _open_session(answer, settings, state, principal, until)


def _with_provider(request: Request) -> Any:
    settings = settings_of(request)
    try:
        provider(settings)
    except NoIdentityProvider as err:
        raise Refused(404, str(err)) from None
    return settings


async def signin_oidc(request: Request) -> Response:
    settings = _with_provider(request)
    state = state_of(request)
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
    settings = _with_provider(request)
    state = state_of(request)
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
        await state.refused("", "GET", request.url.path, 401, str(err), remote(request))
        answer = _signin_page(request, settings, 401, str(err))
        answer.delete_cookie(names.flow, path="/")
        return answer
    return _signed_in(settings, state, principal, safe_next(flow.get("next")))


def _signed_in(settings: Any, state: ConsoleState, principal: Principal, target: str) -> Response:
    """Set the session and go on (to the inbox, or the page the sign-in started from) from a page
    of our own: a redirect straight from the identity provider's cross-site navigation would not
    carry the SameSite=Strict cookie."""
    page = render("signed_in.html", me=principal, next=target)
    return _open_session(page, settings, state, principal)


def _open_session(
    answer: Response, settings: Any, state: ConsoleState, principal: Principal, until: float | None = None
) -> Response:
    names = CookieNames(settings.public_url)
    session = new_session(principal, settings.session_hours, until)
    cookie = state.signer(settings).dump("session", session.model_dump(mode="json"))
    max_age = max(1, int(session.expires - time.time()))
    answer.set_cookie(names.session, cookie, **names.attributes("strict", max_age))
    answer.delete_cookie(names.flow, path="/")
    return answer


async def _passkey_keys(request: Request, name: str) -> list[passkey_signin.Registered]:
    state = state_of(request)
    configs = await passkey_signin.known_configs(await state.host.aiops(), state.host.loaded.agent_configs)
    return passkey_signin.registered(name, configs)


async def signin_passkey_options(request: Request) -> JSONResponse:
    """The challenge for a passkey sign-in as ``name``; the flow is kept in this browser's cookie."""
    settings = settings_of(request)
    state = state_of(request)
    limit_address(request)
    body = await read_json(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not re.fullmatch(passkey_signin.NAME_PATTERN, name):
        raise Refused(422, "name the person signing in (1 to 200 characters)")
    try:
        options, flow = request.app.state.passkeys.options(name, await _passkey_keys(request, name))
        flow["next"] = safe_next(body.get("next"))
    except passkey_signin.PasskeySignInRefused as err:
        await state.refused(name, "POST", request.url.path, 401, str(err), remote(request))
        return JSONResponse({"error": str(err)}, 401)
    answer = JSONResponse(options)
    names = CookieNames(settings.public_url)
    cookie = state.signer(settings).dump("passkey sign-in", flow)
    answer.set_cookie(names.flow, cookie, **names.attributes("lax", FLOW_SECONDS))
    return answer


async def signin_passkey(request: Request) -> Response:
    """Verify the passkey's assertion and open the session; the script then goes to the inbox."""
    settings = settings_of(request)
    state = state_of(request)
    names = CookieNames(settings.public_url)
    who = ""
    try:
        try:
            assertion = passkey_signin.SignInAssertion.model_validate(await read_json(request))
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
        await state.refused(who, "POST", request.url.path, 401, str(err), remote(request))
        answer: Response = JSONResponse({"error": str(err)}, 401)
        answer.delete_cookie(names.flow, path="/")
        return answer
    answer = JSONResponse({"next": safe_next(flow.get("next"))})
    return _open_session(answer, settings, state, principal)


async def signout(request: Request) -> Response:
    settings = settings_of(request)
    session = session_now(request)
    if session is not None:
        await check_csrf(request, session, await request.form())
    answer = RedirectResponse("/console/signin", 303)
    answer.delete_cookie(CookieNames(settings.public_url).session, path="/")
    return answer
