"""The worker's HTTP endpoints: ``/healthz`` (alive), ``/readyz`` (ready), ``/metrics``.

Ready means connected to Temporal, connected to PostgreSQL (when the worker
has one) and polling its task queue; ``/readyz`` answers 503 with the failing
check named otherwise, so an orchestrator stops routing to (or restarts) a
worker that cannot do its job.

Served by Starlette on uvicorn, the web stack the project already ships for the
HTTP gateway, rather than a hand-written HTTP parser: uvicorn (h11) does the
protocol work (malformed requests get a 400, oversized heads are refused, keep-alive,
HEAD), Starlette the routing (405 for other methods). It runs in the worker's own
event loop (signals stay the worker's), so a wedged loop fails ``/healthz`` too.
aiohttp would do the same job but would be a second web stack in the image.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import asyncpg
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from aiops.serving import EmbeddedServer, bind

log = logging.getLogger("aiops.health")

CHECK_TIMEOUT_SECONDS = 3.0
DEFAULT_HOST = "127.0.0.1"

Check = Callable[[], Awaitable[None]]


def temporal_check(client: Client) -> Check:
    async def check() -> None:
        if not await client.service_client.check_health():
            raise RuntimeError("the Temporal frontend reports it is not serving")

    return check


def postgres_check(pool: asyncpg.Pool) -> Check:
    async def check() -> None:
        await pool.fetchval("SELECT 1")

    return check


def polling_check(is_running: Callable[[], bool]) -> Check:
    async def check() -> None:
        if not is_running():
            raise RuntimeError("the worker is not polling its task queue")

    return check


class HealthServer:
    def __init__(self, checks: dict[str, Check], registry: CollectorRegistry | None = None) -> None:
        self.checks = checks
        self.registry = registry
        self.port = 0
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> Starlette:
        routes = [
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
        ]
        if self.registry is not None:
            routes.append(Route("/metrics", self._metrics, methods=["GET"]))
        return Starlette(routes=routes, exception_handlers={404: self._not_found})

    async def start(
        self, host: str = DEFAULT_HOST, port: int = 9464, sock: socket.socket | None = None
    ) -> int:
        """Serve on ``sock`` (see ``aiops.serving.bind``) or on host:port; return the port."""
        sock = sock if sock is not None else bind(host, port)
        config = uvicorn.Config(
            self.app(),
            # h11, not httptools: a probe endpoint wants strict parsing (Host required, the head
            # size bound below) more than the C parser's speed, which the gateway uses.
            http="h11",
            lifespan="off",
            access_log=False,
            log_config=None,  # the process's logging applies
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
            server_header=False,
            date_header=False,
            h11_max_incomplete_event_size=16 * 1024,  # a request head larger than this is refused
        )
        self._server = EmbeddedServer(config, handle_signals=False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the health server stopped while starting")
            await asyncio.sleep(0.01)
        self.port = sock.getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        async def run(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
                return "ok"
            except Exception as err:  # every failure is a reason not to be ready
                return f"failing: {type(err).__name__}: {err}"[:300]

        names = list(self.checks)
        results = await asyncio.gather(*(run(self.checks[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        return all(r == "ok" for r in results), report

    async def _healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def _readyz(self, request: Request) -> Response:
        ready, report = await self.readiness()
        return JSONResponse({"ready": ready, "checks": report}, status_code=200 if ready else 503)

    async def _metrics(self, request: Request) -> Response:
        assert self.registry is not None
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return PlainTextResponse("not found: try /healthz, /readyz or /metrics\n", status_code=status)
