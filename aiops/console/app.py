"""The console in the API's process: its pages under ``/console``, and its session for ``/v1``.

``wrap(api, host)`` puts one ASGI layer in front of the REST API:

* ``/console/...`` goes to the console's pages (``pages.py``);
* a ``/v1/...`` call that carries no ``Authorization`` header but the console's session cookie is
  the signed-in person's own call from the console's script: the session names them (the API's
  ``caller`` reads ``request.state.console_principal``) and, for anything but GET, HEAD and
  OPTIONS, the ``X-CSRF-Token`` header must be the session's. A bad cookie or token is refused
  (401, 403), with the reason, and written to ``api_refusals`` like every refusal of the API.

Every console answer carries a strict content security policy (no inline script or style, no
frames, no plugins, no ``<base>``), ``nosniff``, ``no-referrer`` (the sign-in's code must not
leak in a Referer) and ``no-store``.
"""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.database.api_tokens import ApiTokens
from aiops.api.app import Host, one_line
from aiops.gateway.config import Api, Console

from .oidc import Oidc
from .session import CSRF_HEADER, CookieNames, Session, SessionRefused, Signer, csrf_matches
from .token_signin import TokenSignInRefused, TokenUnchecked, still_usable

log = logging.getLogger("aiops.console")

CSP = "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ConsoleState:
    """What the console's pages share: its host, its cookie signer, its OIDC client."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.oidc = Oidc()
        self._signers: dict[str, Signer] = {}

    def api(self) -> Api | None:
        return self.host.loaded.config.api

    def settings(self) -> Console | None:
        api = self.api()
        return api.console if api is not None else None

    def signer(self, settings: Console) -> Signer:
        signer = self._signers.get(settings.secret_env)
        if signer is None:
            signer = self._signers[settings.secret_env] = Signer.from_env(settings.secret_env)
        return signer

    def session_of(self, cookies: dict[str, str]) -> Session | None:
        """The session a request's cookies hold; None without one; ``SessionRefused`` if bad."""
        settings = self.settings()
        if settings is None:
            return None
        cookie = cookies.get(CookieNames(settings.public_url).session)
        if not cookie:
            return None
        return self.signer(settings).session(cookie)

    async def tokens(self) -> ApiTokens | None:
        try:
            pool = (await self.host.aiops()).pool
        except Exception as err:  # Temporal or PostgreSQL unreachable: the token cannot be checked
            raise TokenUnchecked(f"cannot check API tokens now: {one_line(err, 200)}") from None
        return ApiTokens(pool) if pool is not None else None

    async def still_signed_in(self, session: Session, method: str, path: str, remote: str) -> None:
        """A session opened with an API token holds only while the token does: checked on every
        request; ``TokenSignInRefused`` (written to ``api_refusals``) once revoked or expired."""
        if session.principal.via != "token":
            return
        try:
            await still_usable(session, await self.tokens())
        except TokenSignInRefused as err:
            await self.refused(err.who, method, path, 401, str(err), remote)
            raise

    async def refused(self, who: str, method: str, path: str, status: int, reason: str, remote: str) -> None:
        """Write a refusal where the API writes its own (``api_refusals``); log it either way."""
        log.info("console %s %s by %s: %s %s", method, path, who or "?", status, reason)
        try:
            pool = (await self.host.aiops()).pool
            if pool is not None:
                await ApiTokens(pool).refused(who, method, path[:500], status, reason, remote)
        except Exception as err:  # the refusal stands even when it cannot be stored
            log.error("console refusal not stored: %s", one_line(err))


def cookies_of(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # an unparsable Cookie header is no session
                continue
    return {key: morsel.value for key, morsel in jar.items()}


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class ConsoleLayer:
    def __init__(self, api: ASGIApp, pages: ASGIApp, state: ConsoleState) -> None:
        self.api = api
        self.pages = pages
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path == "/console" or path.startswith("/console/"):
            await self.pages(scope, receive, _secured(send))
            return
        if path.startswith("/v1/") and not _header(scope, b"authorization"):
            refusal = await self._session_call(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.api(scope, receive, send)

    async def _session_call(self, scope: Scope) -> JSONResponse | None:
        """Name the console's person for the API, or refuse a bad session or CSRF token."""
        try:
            session = self.state.session_of(cookies_of(scope))
        except SessionRefused as err:
            return await self._refuse(scope, "", 401, str(err))
        if session is None:
            return None
        if scope["method"] not in SAFE_METHODS and not csrf_matches(
            session, _header(scope, CSRF_HEADER.encode())
        ):
            who = session.principal.name
            reason = f"the console's CSRF token is missing or wrong for {who}: reload the page"
            return await self._refuse(scope, session.principal.name, 403, reason)
        client = scope.get("client") or ("", 0)
        try:
            await self.state.still_signed_in(session, scope["method"], scope.get("path", ""), client[0])
        except TokenSignInRefused as err:  # already written to api_refusals
            return JSONResponse({"error": str(err)}, 401)
        except TokenUnchecked as err:
            return JSONResponse({"error": str(err)}, 503)
        scope.setdefault("state", {})["console_principal"] = session.principal
        return None

    async def _refuse(self, scope: Scope, who: str, status: int, reason: str) -> JSONResponse:
        client = scope.get("client") or ("", 0)
        await self.state.refused(who, scope["method"], scope.get("path", ""), status, reason, client[0])
        return JSONResponse({"error": reason}, status)


def _secured(send: Send) -> Send:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0] not in dict(SECURITY_HEADERS)]
            message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
        await send(message)

    return secured


def wrap(api: ASGIApp, host: Host) -> ASGIApp:
    """The REST API with the console in front of it (served when ``api.console`` is configured)."""
    from .pages import build

    state = ConsoleState(host)
    return ConsoleLayer(api, build(state), state)
