"""The read-only tools a diagnosis may call, each bounded in time and bytes and audited.

They run inside Temporal activities (one per call, via Pydantic AI's Temporal integration), on
whichever worker polls the diagnosis queue. Every result is untrusted data for the model: it is
returned inside ``<tool_output>`` delimiters, truncated to ``tools.max_bytes``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from agents.llm import runtime
from agents.llm.contracts import DiagnosisDeps
from agents.llm.settings import McpServerSettings
from agents.services import framework_services
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import AgentError
from aiops.contracts.models import ActionType, AgentAction, RiskLevel

audit_log = logging.getLogger("aiops.llm.audit")

TOOL_OUTPUT_OPEN = "<tool_output>"
TOOL_OUTPUT_CLOSE = "</tool_output>"


class ToolRefused(AgentError):
    """A tool call outside what the config allows (a path outside the roots, an unknown agent)."""


def bounded(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    cut = data[:max_bytes].decode("utf-8", "ignore")
    return f"{cut}\n[truncated: {len(data)} bytes, showing the first {max_bytes}]"


def delimit(text: str) -> str:
    """Wrap untrusted text so it cannot close its own delimiter."""
    safe = text.replace(TOOL_OUTPUT_CLOSE, "<\\/tool_output>").replace(TOOL_OUTPUT_OPEN, "<\\tool_output>")
    return f"{TOOL_OUTPUT_OPEN}\n{safe}\n{TOOL_OUTPUT_CLOSE}"


async def audited(
    deps: DiagnosisDeps, tool: str, arguments: dict[str, Any], call: Callable[[], Awaitable[str]]
) -> str:
    """Run one tool call under its time bound, truncate it, log one structured audit line."""
    started = time.monotonic()
    ok = True
    try:
        async with runtime.heartbeating():
            text = await asyncio.wait_for(call(), deps.tools.timeout_seconds)
    except TimeoutError:
        ok, text = False, f"error: the tool did not answer within {deps.tools.timeout_seconds:g}s"
    except ToolRefused as err:
        ok, text = False, f"refused: {err}"
    except Exception as err:  # a failing read is an answer for the model, not a crash
        ok, text = False, f"error: {type(err).__name__}: {str(err)[:500]}"
    text = bounded(text, deps.tools.max_bytes)
    audit_log.info(
        "llm tool call %s by %s for event %s: %s (%d bytes, %.2fs)",
        tool,
        deps.agent_id,
        deps.event_id,
        "ok" if ok else "failed",
        len(text.encode()),
        time.monotonic() - started,
        extra={
            "agent_id": deps.agent_id,
            "event_id": deps.event_id,
            "tool": tool,
            "tool_arguments": json.dumps(arguments, default=str)[:1000],
            "ok": ok,
        },
    )
    return delimit(text)


# ----- Prometheus ---------------------------------------------------------------------------


async def _prometheus(deps: DiagnosisDeps, path: str, params: dict[str, str]) -> str:
    prometheus = deps.tools.prometheus
    if prometheus is None:
        raise ToolRefused("no Prometheus is configured (settings.tools.prometheus.url)")
    url = prometheus.url.rstrip("/") + path
    async with httpx.AsyncClient(timeout=prometheus.timeout_seconds, follow_redirects=False) as client:
        async with client.stream("GET", url, params=params) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > deps.tools.max_bytes * 4:  # enough to summarise; never buffer a huge answer
                    break
            body = b"".join(chunks).decode("utf-8", "replace")
    if response.status_code >= 400:
        return f"error: Prometheus answered HTTP {response.status_code}: {body[:500]}"
    return _compact_prometheus(body)


def _compact_prometheus(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or data.get("status") != "success":
        return json.dumps(data)[:4000]
    result = data.get("data", {})
    return json.dumps(result, separators=(",", ":"))


async def prometheus_query(deps: DiagnosisDeps, query: str, at: str | None = None) -> str:
    params = {"query": query}
    if at:
        params["time"] = at
    return await _prometheus(deps, "/api/v1/query", params)


async def prometheus_query_range(
    deps: DiagnosisDeps, query: str, minutes_back: int = 30, step_seconds: int = 60
) -> str:
    prometheus = deps.tools.prometheus
    minutes_back = max(1, min(int(minutes_back), 7 * 24 * 60))
    step_seconds = max(1, int(step_seconds))
    if prometheus is not None:  # bound the points per series
        step_seconds = max(step_seconds, (minutes_back * 60) // prometheus.max_range_points + 1)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes_back)
    params = {"query": query, "start": start.isoformat(), "end": end.isoformat(), "step": f"{step_seconds}s"}
    return await _prometheus(deps, "/api/v1/query_range", params)


# ----- the agent's own state ------------------------------------------------------------------


async def agent_status(deps: DiagnosisDeps) -> str:
    if not deps.tools.agent_status:
        raise ToolRefused("the agent_status tool is disabled (settings.tools.agent_status)")
    services = framework_services()
    status = await services.agent_status(deps.agent_id, deps.task_queue)
    inbox = await services.approval_inbox(deps.agent_id, deps.task_queue)
    summary = {
        "state": status.state.value,
        "counters": status.counters.model_dump(),
        "circuit_open": status.circuit_open,
        "pending_actions": [
            {
                "action_id": p.action_id,
                "status": p.status,
                "risk": p.risk_level.value,
                "description": p.description[:200],
                "proposed_at": p.proposed_at.isoformat(),
            }
            for p in status.pending_actions[:20]
        ],
        "waiting_for_approval": inbox[:20],
        "recent_errors": [
            {"at": e.at.isoformat(), "message": e.message[:200], "event_id": e.event_id}
            for e in status.recent_errors[-10:]
        ],
        "recent_rejections": [
            {"at": e.at.isoformat(), "message": e.message[:200]} for e in status.recent_rejections[-10:]
        ],
    }
    return json.dumps(summary, separators=(",", ":"))


# ----- files within roots -----------------------------------------------------------------


def _root_for(path: str, roots: list[str]) -> str:
    if not path.startswith("/"):
        raise ToolRefused("the path must be absolute")
    norm = os.path.normpath(path)
    for root in roots:
        base = os.path.normpath(root)
        if norm == base or norm.startswith(base.rstrip("/") + "/"):
            if os.path.realpath(base) != base:
                raise ToolRefused("the configured root is (or lies under) a symlink")
            return base
    raise ToolRefused("the path is outside the configured file roots")


def _open_below(root: str, norm: str) -> int:
    """Open ``norm`` for reading, walking down from ``root`` without following any symlink."""
    relative = os.path.relpath(norm, root)
    parts = [] if relative == "." else relative.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ToolRefused("the path goes through a symlink") from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file_tail_sync(path: str, roots: list[str], tail_lines: int, max_bytes: int) -> str:
    root = _root_for(path, roots)
    fd = _open_below(root, os.path.normpath(path))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ToolRefused("not a regular file")
        start = max(0, info.st_size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, max_bytes)
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # a partial first line
    tail_lines = max(1, min(int(tail_lines), 2000))
    return "\n".join(lines[-tail_lines:])


async def read_file_tail(deps: DiagnosisDeps, path: str, tail_lines: int = 100) -> str:
    return await asyncio.to_thread(
        read_file_tail_sync, path, deps.tools.file_roots, tail_lines, deps.tools.max_bytes
    )


# ----- peer agents' read-only hooks ------------------------------------------------------------


async def _peer_config(deps: DiagnosisDeps, agent_id: str) -> AgentConfig:
    if agent_id not in deps.tools.peer_agents:
        raise ToolRefused(f"agent {agent_id[:64]!r} is not in settings.tools.peer_agents")
    return await framework_services().agent_config(agent_id, deps.task_queue)


async def run_detector(deps: DiagnosisDeps, agent_id: str) -> str:
    config = await _peer_config(deps, agent_id)
    async with runtime.peer_agent(config) as agent:
        if not agent.has_detector():
            return f"agent {agent_id} has no detector"
        events = await agent.detect()
    return json.dumps(
        [
            {
                "id": e.id,
                "type": e.type.value,
                "source": e.source,
                "severity": e.severity.value,
                "data": e.data,
            }
            for e in events[:20]
        ],
        default=str,
    )


async def dry_run_plan(
    deps: DiagnosisDeps,
    agent_id: str,
    action_type: str,
    targets: list[str],
    parameters: dict[str, str | int | float | bool] | None = None,
) -> str:
    config = await _peer_config(deps, agent_id)
    action = AgentAction(
        id=f"llm-dry-run-{deps.event_id}",
        agent_id=agent_id,
        type=ActionType(action_type),
        description="dry run requested by an llm diagnosis",
        target_resources=[str(t) for t in targets[:20]],
        risk_level=RiskLevel.LOW,
        parameters=dict(parameters or {}),
    )
    async with runtime.peer_agent(config) as agent:
        plan = await agent.plan(action)
    if plan is None:
        return f"agent {agent_id} has no dry run for this action"
    return plan.model_dump_json()


# ----- tools of MCP servers, the read-only ones the operator listed ---------------------------------

MCP_PREFIX = "mcp_"


def mcp_tool_name(server: str, tool: str) -> str:
    """The name the model sees: ``mcp_<server>_<tool>``."""
    return f"{MCP_PREFIX}{server}_{tool}"


def _read_only(server: McpServerSettings, name: str, annotations: Any) -> bool:
    if name not in server.read_only_tools:
        return False
    hint = annotations.get("readOnlyHint") if isinstance(annotations, dict) else None
    return hint is not False  # a server that says the tool writes is believed


def mcp_server_toolset(deps: DiagnosisDeps, server: McpServerSettings) -> Any:
    """One MCP server's toolset for one activity: connected on entry, closed on exit; only its
    listed read-only tools; every call bounded (``tools.timeout_seconds``, ``tools.max_bytes``),
    heartbeating and audited like the built-in tools. Runs inside the diagnosis' tool activities."""
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai.mcp import MCPToolset

    timeout = deps.tools.timeout_seconds

    async def call(ctx: Any, call_tool: Any, name: str, args: dict[str, Any]) -> str:
        label = mcp_tool_name(server.name, name)
        if name not in server.read_only_tools:  # never offered; refused if asked for anyway
            raise ToolRefused(f"{label} is not a read-only tool of MCP server {server.name}")

        async def run() -> str:
            result = await call_tool(name, args)
            return result if isinstance(result, str) else json.dumps(result, default=str)

        return await audited(deps, label, args, run)

    client: Any = StdioTransport(server.command[0], server.command[1:]) if server.command else server.url
    toolset = MCPToolset(
        client,
        id=f"{MCP_PREFIX}{server.name}",
        process_tool_call=call,
        init_timeout=timeout,
        read_timeout=timeout + 5,  # the call's own bound (``audited``) applies first
        include_instructions=False,  # the server's instructions are untrusted: never in the prompt
    )
    return toolset.filtered(
        lambda _ctx, tool: _read_only(server, tool.name, (tool.metadata or {}).get("annotations"))
    )
