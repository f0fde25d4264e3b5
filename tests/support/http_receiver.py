"""A real local HTTP receiver (Starlette on uvicorn, in-process) that records what arrives.

Tests point notice channels at it and read back each request's path, headers and JSON body,
and can make it fail: the first N requests to a path answered 500 (a receiver that is down),
or every request to a path answered with a fixed status (a revoked URL: 404, a bad key: 400).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the receiver answered


@dataclass
class Receiver:
    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> requests answered 500
    always: dict[str, int] = field(default_factory=dict)  # path -> status every request gets

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def accepted(self, path: str) -> list[Received]:
        return [r for r in self.to(path) if 200 <= r.status < 300]

    async def _handle(self, request: Request) -> JSONResponse:
        path = request.url.path
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        status = self.always.get(path, 200)
        if status == 200 and self.fail_first.get(path, 0) > len(self.to(path)):
            status = 500
        self.requests.append(Received(path, {k.lower(): v for k, v in request.headers.items()}, body, status))
        return JSONResponse({"ok": status < 300}, status_code=status)


@asynccontextmanager
async def http_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver._handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises why it could not start
            await asyncio.sleep(0.01)
        yield receiver
    finally:
        server.should_exit = True
        await serving
        sock.close()
