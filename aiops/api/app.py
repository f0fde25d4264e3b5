"""The REST API's application: FastAPI, mounted in the gateway's Starlette app (one process).

Why FastAPI here (the gateway itself stays plain Starlette): the API's value is its contract.
FastAPI builds the OpenAPI 3.1 document from the pydantic models the workflows already answer
with (``AgentStatus``, ``ActionRecord``, ``AuditRow``, ...), validates every body with them, and
checks every answer against them before it leaves, so the document served at
``/v1/openapi.json`` is the API, not a description kept beside it. It runs on the same
Starlette the gateway uses, so it mounts as one more route of the gateway's app.

The gateway's rules hold: bodies bounded (``limits.max_body_bytes``, read within
``limits.read_timeout_seconds``: ``BodyLimit`` below, before any parsing), rate limits (a token
bucket per person, ``api.rate_limit``, and one per client address before authentication), and
every error is ``{"error": "<one line>"}``. Every 401 and 403 is written to ``api_refusals``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from typing import Any, Protocol

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from activities.database.api_tokens import ApiTokens
from activities.database.pool import database_url, open_pool
from aiops.client import AiopsClient
from aiops.client.errors import (
    ActionNotFoundError,
    AgentNotRunningError,
    AgentTypeNotServedError,
    ClientError,
    CommandRefusedError,
    ConfigRefusedError,
)
from aiops.contracts.errors import AiopsError
from aiops.gateway.config import Api, LoadedConfig, RateLimit
from aiops.gateway.ratelimit import TokenBucket

log = logging.getLogger("aiops.api")

OPENAPI_URL = "/v1/openapi.json"
API_OFF = "the REST API is off: add an `api:` section to the gateway config (docs/api.md)"


class Host(Protocol):
    """What the API uses of the gateway it is mounted in: its config in force and its client."""

    @property
    def loaded(self) -> LoadedConfig: ...

    async def aiops(self) -> AiopsClient: ...


class ApiError(AiopsError):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class Buckets:
    """Token buckets per caller (a person, or an address before sign-in), the gateway's
    ``TokenBucket``; at most ``max_keys`` kept, the least recently used dropped first, so callers
    from ever new addresses cannot grow the process's memory."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, limit: RateLimit) -> int:
        """0 to pass, else the whole seconds to put in ``Retry-After``."""
        bucket = self._buckets.pop(key, None)
        if bucket is None or bucket.limit != limit:
            bucket = TokenBucket(limit)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        wait = bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))


class Context:
    """The API's view of its host, kept in ``app.state.context``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.limiter = Buckets()

    def settings(self) -> Api:
        settings = self.host.loaded.config.api
        if settings is None:
            raise ApiError(404, API_OFF)
        return settings

    async def client(self) -> AiopsClient:
        return await self.host.aiops()

    async def tokens(self) -> ApiTokens | None:
        pool = (await self.client()).pool
        return ApiTokens(pool) if pool is not None else None


def one_line(text: object, limit: int = 500) -> str:
    return " ".join(str(text).split())[:limit]


def status_of(err: Exception) -> int:
    """The HTTP status of what the client raised (the workflow's refusals are 409, reason verbatim)."""
    if isinstance(err, AgentNotRunningError | ActionNotFoundError):
        return 404
    if isinstance(err, CommandRefusedError | ConfigRefusedError | AgentTypeNotServedError):
        return 409
    if isinstance(err, ClientError):
        return 409 if str(err).startswith("refused") else 404 if "has no" in str(err) else 400
    return 503


def build(host: Host) -> FastAPI:
    from aiops.api import events, passkeys, routes  # the endpoints, each a thin call on the client facade

    app = FastAPI(
        title="AIOps agents API",
        version="1",
        summary="Agents, configs, actions and the audit trail of the AIOps agent framework",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = Context(host)
    app.include_router(routes.router)
    app.include_router(events.router)
    app.include_router(passkeys.router)

    @app.exception_handler(ApiError)
    async def _refused(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.reason}, err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for problem in err.errors()[:3]:
            where = ".".join(str(p) for p in problem.get("loc", ()))
            parts.append(f"{where}: {problem.get('msg', 'invalid')}")
        more = len(err.errors()) - 3
        text = "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
        return JSONResponse({"error": one_line(f"invalid request: {text}")}, 422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSONResponse:
        reason = err.detail if isinstance(err.detail, str) else "refused"
        if err.status_code == 404:
            reason = f"no such endpoint: {request.method} {one_line(request.url.path, 200)}"
        elif err.status_code == 405:
            reason = f"{request.method} is not allowed on {one_line(request.url.path, 200)}"
        return JSONResponse({"error": reason}, err.status_code, headers=err.headers)

    @app.exception_handler(AiopsError)
    async def _client(request: Request, err: AiopsError) -> JSONResponse:
        return JSONResponse({"error": one_line(err)}, status_of(err))

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, err: RPCError) -> JSONResponse:
        return JSONResponse({"error": one_line(f"Temporal refused or failed: {err}")}, 503)

    return app


class BodyLimit:
    """Read the whole body first, bounded in size and time, as the gateway does; then hand it on.

    A body over the limit is refused 413 before a byte of it is parsed; one that trickles in
    slower than the read timeout, 408.
    """

    def __init__(self, app: ASGIApp, host: Host) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.host.loaded.config.limits
        refused = await self._read(scope, receive, limits.max_body_bytes, limits.read_timeout_seconds)
        if isinstance(refused, JSONResponse):
            await refused(scope, receive, send)
            return
        body, sent = refused, False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _read(scope: Scope, receive: Receive, limit: int, within: float) -> bytes | JSONResponse:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"the body is {declared} bytes, over the limit of {limit}"}, 413)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(within):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        return JSONResponse({"error": f"the body is over the limit of {limit} bytes"}, 413)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return JSONResponse({"error": f"the body did not arrive within {within:g}s"}, 408)
        return b"".join(chunks)


async def api_pool() -> asyncpg.Pool | None:
    """The PostgreSQL pool the API reads (``DATABASE_URL``), or None: the event intake must not
    wait on, or fail with, a database it does not use, so one try, and a warning if it fails."""
    url = database_url()
    if not url:
        return None
    try:
        return await open_pool(url, attempts=1, max_size=4)
    except Exception as err:
        log.warning(
            "the REST API has no database (%s): tokens, config history and audit unavailable", one_line(err)
        )
        return None


class GatewayHost:
    """A ``Host`` over the gateway: its config in force (reloaded with it), its Temporal
    connection."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    @property
    def loaded(self) -> LoadedConfig:
        loaded: LoadedConfig = self._gateway.holder.current
        return loaded

    async def aiops(self) -> AiopsClient:
        client: AiopsClient = await self._gateway.connector.get()
        return client


def api_app(gateway: Any) -> ASGIApp:
    """The API as one ASGI app to mount in the gateway's Starlette app, the web console in front
    of it (aiops/console, docs/console.md: its pages, and its signed-in session for ``/v1``)."""
    from aiops.console.app import wrap

    host = GatewayHost(gateway)
    return BodyLimit(wrap(build(host), host), host)
