"""Reading a request body within a size and a time limit: the gateway's intake and the codec
server both refuse a body that is too large or too slow the same way, each with its own error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request


async def read_body(
    request: Request, limit: int, within: float, refuse: Callable[[int, str], Exception]
) -> bytes:
    """The body, at most ``limit`` bytes, arrived within ``within`` seconds; otherwise raises
    ``refuse(413, ...)`` (declared or streamed too large) or ``refuse(408, ...)`` (too slow)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refuse(413, f"the body is {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise refuse(413, f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise refuse(408, f"the body did not arrive within {within:g}s") from None
    return b"".join(chunks)
