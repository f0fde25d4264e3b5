"""A local HTTP server speaking Prometheus' query API (``/api/v1/query``, ``/api/v1/query_range``),
in-process on loopback: every query it answers is recorded, so a test counts tool calls by their
side effect. Prometheus itself does not run here; its HTTP API is small and stable.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Prometheus:
    url: str = ""
    queries: list[str] = field(default_factory=list)  # every query answered, in order
    value: str = "1"

    async def _query(self, request: Request) -> JSONResponse:
        query = request.query_params.get("query", "")
        self.queries.append(query)
        sample = {"metric": {"__name__": query.split("{")[0]}, "value": [time.time(), self.value]}
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": [sample]}})

    def count(self, query: str) -> int:
        return self.queries.count(query)


@asynccontextmanager
async def prometheus_stub() -> AsyncIterator[Prometheus]:
    stub = Prometheus()
    app = Starlette(
        routes=[
            Route("/api/v1/query", stub._query, methods=["GET", "POST"]),
            Route("/api/v1/query_range", stub._query, methods=["GET", "POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
        await asyncio.sleep(0.01)
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        server.should_exit = True
        await task
        sock.close()
