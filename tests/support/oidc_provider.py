"""A small OpenID Connect provider for tests, served over HTTP: discovery, a JWKS endpoint and a
token endpoint, its keys and tokens made with joserfc (Authlib's JOSE library, the successor of
``authlib.jose``).

It is a real server on a real port: the API's config pins the key set fetched from its
``jwks_uri`` (as an operator copies it), and the tests sign in at its token endpoint with the
resource-owner password grant (RFC 6749 section 4.3), the simplest grant a test can drive without
a browser. It rotates its key on demand, to show that pinned keys are not fetched again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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

    def rotate(self) -> None:
        self.key = _new_key()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
                "grant_types_supported": ["password"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "password":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        user = self.users.get(str(form.get("username", "")))
        if user is None or user[0] != form.get("password"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": form["username"], "aud": self.audience, "groups": user[1],
            "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
        }  # fmt: skip
        access = jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300})


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
