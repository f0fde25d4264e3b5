"""A tiny MCP server (the ``mcp`` package's FastMCP, over stdio) for the llm agent's MCP tests.

    python tests/support/mcp_ops_server.py CALLS_FILE            # stdio
    python tests/support/mcp_ops_server.py CALLS_FILE PORT       # streamable HTTP, 127.0.0.1:PORT/mcp

Every tool call appends ``<tool> <json args>`` to CALLS_FILE, so a test counts calls by their side
effect. ``service_status`` and ``slow_status`` are annotated read-only; ``restart_service`` says it
writes (``readOnlyHint: false``) and ``drop_table`` is destructive: neither may ever reach the model.
"""

from __future__ import annotations

import json
import sys
import time

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

CALLS = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = FastMCP("ops", host="127.0.0.1", port=PORT or 8000, log_level="WARNING")
READ_ONLY = ToolAnnotations(readOnlyHint=True)


def _called(tool: str, **args: object) -> None:
    with open(CALLS, "a") as calls:
        calls.write(f"{tool} {json.dumps(args, sort_keys=True)}\n")


@server.tool(annotations=READ_ONLY)
def service_status(service: str) -> str:
    """The status of a service: state, restarts, memory."""
    _called("service_status", service=service)
    return json.dumps({"service": service, "state": "crash-looping", "restarts": 5, "memory": "1.9 of 2 GiB"})


@server.tool(annotations=READ_ONLY)
def slow_status(service: str) -> str:
    """A status that takes longer than any tool call may."""
    _called("slow_status", service=service)
    time.sleep(30)
    return "too late"


@server.tool(annotations=ToolAnnotations(readOnlyHint=False))
def restart_service(service: str) -> str:
    """Restart a service."""
    _called("restart_service", service=service)
    return "restarted"


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def drop_table(table: str) -> str:
    """Drop a database table."""
    _called("drop_table", table=table)
    return "dropped"


if __name__ == "__main__":
    server.run("streamable-http" if PORT else "stdio")
