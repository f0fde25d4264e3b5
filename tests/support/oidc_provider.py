"""A small OpenID Connect provider for tests, served over HTTP: discovery, a JWKS endpoint and a
token endpoint, its keys and tokens made with joserfc (Authlib's JOSE library, the successor of
``authlib.jose``).

It is a real server on a real port: the API's config pins the key set fetched from its
``jwks_uri`` (as an operator copies it), and the tests sign in at its token endpoint with the
resource-owner password grant (RFC 6749 section 4.3), the simplest grant a test can drive without
a browser. It rotates its key on demand, to show that pinned keys are not fetched again.

For the web console it also speaks the **authorization code grant with PKCE** (RFC 6749 4.1,
RFC 7636, S256 only, checked with Authlib's ``create_s256_code_challenge``): ``/authorize``
checks the client and its registered redirect URI, shows a login form (which a headless browser
fills in), and redirects back with a one-time code; ``/token`` exchanges it once, for the
verifier whose challenge it was, within a minute, and answers an ID token (``aud``: the client,
with the ``nonce``) beside the access token.
"""

from __future__ import annotations

import html
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from aiops.serving import EmbeddedServer, bind


def _new_key() -> ECKey:
    return ECKey.generate_key(
        "P-256", parameters={"kid": uuid.uuid4().hex[:8], "use": "sig", "alg": "ES256"}, private=True
    )


@dataclass
class Provider:
    """Users (name → password, groups) and the signing key; ``issuer`` is set once it is served."""

    users: dict[str, tuple[str, list[str]]]
    audience: str
    issuer: str = ""
    key: ECKey = field(default_factory=_new_key)
    clients: dict[str, list[str]] = field(default_factory=dict)  # client id → its redirect URIs
    codes: dict[str, dict] = field(default_factory=dict)
    exchanged: list[str] = field(default_factory=list)  # the client ids, one per code exchanged

    def rotate(self) -> None:
        self.key = _new_key()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/token", self.token, methods=["POST"]),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
                "authorization_endpoint": f"{self.issuer}/authorize",
                "grant_types_supported": ["password", "authorization_code"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") == "authorization_code":
            return self._exchange({k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "password":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        user = self.users.get(str(form.get("username", "")))
        if user is None or user[0] != form.get("password"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        return JSONResponse(self._tokens(str(form["username"]), user[1]))

    def _tokens(self, name: str, groups: list[str], client_id: str = "", nonce: str = "") -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": name, "aud": self.audience, "groups": groups,
            "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
        }  # fmt: skip
        header = {"alg": "ES256", "kid": self.key.kid}
        answer = {
            "access_token": jwt.encode(header, claims, self.key),
            "token_type": "Bearer",
            "expires_in": 300,
        }
        if client_id:
            id_claims = {**claims, "aud": client_id, "nonce": nonce, "jti": uuid.uuid4().hex}
            answer["id_token"] = jwt.encode(header, id_claims, self.key)
        return answer

    async def authorize(self, request: Request) -> Response:
        """The authorization endpoint: a login form for a valid request, a redirect with a code
        after a right password; the request's own errors are shown, never redirected (RFC 6749
        4.1.2.1: an unchecked redirect URI must not be followed)."""
        params = {
            k: str(v)
            for k, v in (await request.form() if request.method == "POST" else request.query_params).items()
        }
        client = params.get("client_id", "")
        redirect = params.get("redirect_uri", "")
        if redirect not in self.clients.get(client, []):
            return HTMLResponse("<p>unknown client or redirect URI</p>", 400)
        if params.get("response_type") != "code" or "openid" not in params.get("scope", "").split():
            return self._back(redirect, params, error="unsupported_response_type")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return self._back(redirect, params, error="invalid_request")  # PKCE is required here
        if request.method == "GET":
            return self._login_form(params, "")
        user = self.users.get(params.get("username", ""))
        if user is None or user[0] != params.get("password"):
            return self._login_form(params, "wrong user name or password")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "client_id": client, "redirect_uri": redirect, "challenge": params["code_challenge"],
            "nonce": params.get("nonce", ""), "user": params["username"], "expires": time.time() + 60,
        }  # fmt: skip
        return self._back(redirect, params, code=code)

    @staticmethod
    def _back(redirect: str, params: dict[str, str], **answer: str) -> Response:
        return RedirectResponse(f"{redirect}?{urlencode({**answer, 'state': params.get('state', '')})}", 303)

    @staticmethod
    def _login_form(params: dict[str, str], error: str) -> Response:
        keep = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                "code_challenge_method")  # fmt: skip
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params.get(k, ""))}">' for k in keep
        )
        page = (
            "<!doctype html><title>Test identity provider</title><h1>Test identity provider</h1>"
            f'<p id="error">{html.escape(error)}</p><form method="post" action="/authorize">{hidden}'
            '<label>User <input name="username" id="username"></label>'
            '<label>Password <input name="password" id="password" type="password"></label>'
            '<button type="submit" id="login">Sign in</button></form>'
        )
        return HTMLResponse(page)

    def _exchange(self, form: dict[str, str]) -> Response:
        grant = self.codes.pop(form.get("code", ""), None)  # one use, whatever follows
        if grant is None or grant["expires"] < time.time():
            return JSONResponse({"error": "invalid_grant", "error_description": "unknown or used code"}, 400)
        if form.get("client_id") != grant["client_id"] or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "another client's code"}, 400)
        if create_s256_code_challenge(form.get("code_verifier", "")) != grant["challenge"]:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE verifier mismatch"}, 400
            )
        user = self.users[grant["user"]]
        self.exchanged.append(grant["client_id"])
        return JSONResponse(self._tokens(grant["user"], user[1], grant["client_id"], grant["nonce"]))


@asynccontextmanager
async def serving(provider: Provider) -> AsyncIterator[Provider]:
    sock = bind("127.0.0.1", 0)
    provider.issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(provider.app(), lifespan="off", access_log=False, log_config=None)
    server = EmbeddedServer(config, handle_signals=False)
    import asyncio

    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    try:
        yield provider
    finally:
        server.should_exit = True
        await task
        sock.close()
