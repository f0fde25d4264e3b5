"""Serving the gateway on uvicorn, from the CLI (``aiops gateway``) or in-process (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from aiops.gateway.app import Gateway
from aiops.serving import EmbeddedServer as _Server
from aiops.serving import bind

__all__ = ["Running", "bind", "running", "serve", "uvicorn_config"]


def uvicorn_config(gateway: Gateway, access_log: bool = False) -> uvicorn.Config:
    return uvicorn.Config(
        gateway.app(),
        # httptools (a dependency) parses HTTP/1.1 in C; the pure-Python h11 (uvicorn's fallback when it
        # is missing) cost about a third of the gateway's CPU per request (profiled in bench/).
        http="auto",
        lifespan="on",
        access_log=access_log,
        log_config=None,  # the process's logging (JSON lines from aiops.logs) applies
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


async def serve(gateway: Gateway, sock: socket.socket, handle_signals: bool = True) -> None:
    """Serve until stopped: SIGTERM/SIGINT finish in-flight requests, then return."""
    await _Server(uvicorn_config(gateway), handle_signals).serve(sockets=[sock])


@dataclass
class Running:
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


@contextlib.asynccontextmanager
async def running(gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Running]:
    """The gateway served in this event loop (for tests and benchmarks); stopped gracefully on exit."""
    sock = bind(host, port)
    server = _Server(uvicorn_config(gateway), handle_signals=False)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.01)
    handle = Running(sock.getsockname()[1], server, task)
    try:
        yield handle
    finally:
        if not task.done():
            await handle.stop()
        sock.close()
