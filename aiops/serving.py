"""Serving an ASGI app on uvicorn inside a process that owns its event loop and its signals.

The HTTP gateway (``aiops gateway``) and the worker's health and metrics endpoints
(``aiops.health_server``) both listen through here: a socket bound up front (so a
busy port is reported before anything else starts), and a uvicorn server that
leaves signal handling to its host when embedded.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that handles SIGTERM/SIGINT itself only when asked to."""

    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:  # embedded: the host process owns its signals
            yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), reusable at once after a restart on the same port.

    Raises ``OSError`` (``errno.EADDRINUSE`` for a busy port) for the caller to report.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and an
    # accepted connection inherits this. Without it, a response written in two parts (headers, then
    # body) waits for the peer's delayed ACK: 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
