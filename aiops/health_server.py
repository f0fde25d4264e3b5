"""The worker's HTTP endpoints: ``/healthz`` (alive), ``/readyz`` (ready), ``/metrics``.

Ready means connected to Temporal, connected to PostgreSQL (when the worker
has one) and polling its task queue; ``/readyz`` answers 503 with the failing
check named otherwise, so an orchestrator stops routing to (or restarts) a
worker that cannot do its job. A tiny asyncio server: nothing to install, and
it shares the worker's event loop, so a wedged loop fails ``/healthz`` too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from temporalio.client import Client

log = logging.getLogger("aiops.health")

CHECK_TIMEOUT_SECONDS = 3.0

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
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 9464) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            method = parts[0] if parts else ""
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2:
                status, body, ctype = 400, b"bad request\n", "text/plain"
            elif method not in ("GET", "HEAD"):
                status, body, ctype = 405, b"only GET\n", "text/plain"
            elif path == "/healthz":
                status, body, ctype = 200, b"ok\n", "text/plain"
            elif path == "/readyz":
                ready, report = await self.readiness()
                status = 200 if ready else 503
                body = (json.dumps({"ready": ready, "checks": report}) + "\n").encode()
                ctype = "application/json"
            elif path == "/metrics" and self.registry is not None:
                status, body, ctype = 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
            else:
                status, body, ctype = 404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain"
            reason = {
                200: "OK",
                400: "Bad Request",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }
            head = (
                f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError) as err:  # slow, gone, or a line too long
            log.debug("health request dropped: %s", err)
        except Exception:  # whatever a client sends, the endpoint stays up
            log.exception("health request failed")
        finally:
            writer.close()
