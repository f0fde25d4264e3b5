"""Talking to supervisord (XML-RPC over its unix or inet socket) and to a program's health endpoint.

All calls block; the agent runs them in a thread. Error messages never hold the password.
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
import urllib.error
import urllib.request
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from agents.builtin.service.settings import Service, SupervisorSettings
from aiops.contracts.errors import AgentError, NonRetryableActionError

DOWN_STATES = frozenset({"EXITED", "FATAL", "UNKNOWN"})

# supervisor's XML-RPC fault codes (supervisor.xmlrpc.Faults)
BAD_NAME = 10
ABNORMAL_TERMINATION = 40
SPAWN_ERROR = 50
ALREADY_STARTED = 60
NOT_RUNNING = 70


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """HTTP(S) or a unix socket, with a timeout and (optionally) basic authentication."""

    def __init__(self, socket_path: str | None, timeout: float, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self._socket_path = socket_path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._socket_path is not None:
            return _UnixConnection(self._socket_path, self._timeout)
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class SupervisorError(AgentError):
    """supervisord could not be reached or refused the call; the message never holds the password."""


class Supervisor:
    """Blocking calls to supervisord's XML-RPC interface (run them in a thread)."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self.url = settings.url
        headers = []
        if settings.username is not None:
            token = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
            headers.append(("Authorization", f"Basic {token}"))
        if settings.url.startswith("unix://"):
            self._proxy_url = "http://localhost/RPC2"
            transport = _Transport(settings.url.removeprefix("unix://"), settings.timeout_seconds, headers)
        else:
            self._proxy_url = settings.url
            transport = _Transport(None, settings.timeout_seconds, headers)
        self._transport = transport

    def call(self, method: str, *args: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy(self._proxy_url, transport=self._transport, allow_none=True)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except xmlrpc.client.ProtocolError as err:
            if err.errcode == 401:
                raise SupervisorError(f"supervisord at {self.url} refused the credentials (401)") from None
            raise SupervisorError(f"supervisord at {self.url}: HTTP {err.errcode} {err.errmsg}") from None
        except OSError as err:
            raise SupervisorError(f"cannot reach supervisord at {self.url}: {err}") from None
        finally:
            proxy("close")()

    def info(self, name: str) -> dict[str, Any]:
        try:
            info: dict[str, Any] = self.call("supervisor.getProcessInfo", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == BAD_NAME:
                raise NonRetryableActionError(f"supervisord at {self.url} has no program {name!r}") from None
            raise SupervisorError(
                f"supervisord: getProcessInfo({name!r}) failed: {fault.faultString}"
            ) from None
        return info

    def restart(self, name: str, info: dict[str, Any]) -> list[str]:
        """Stop (when it runs) and start ``name``; the calls made, in order."""
        calls = []
        state = info["statename"]
        deadline = time.monotonic() + 60
        while state == "STOPPING" and time.monotonic() < deadline:
            time.sleep(0.2)
            state = self.info(name)["statename"]
        if state in ("RUNNING", "STARTING", "BACKOFF"):
            calls.append(f"supervisor.stopProcess({name!r})")
            try:
                self.call("supervisor.stopProcess", name, True)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != NOT_RUNNING:
                    raise SupervisorError(f"stopProcess({name!r}) failed: {fault.faultString}") from None
        calls.append(f"supervisor.startProcess({name!r})")
        try:
            self.call("supervisor.startProcess", name, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == ALREADY_STARTED:
                return calls
            if fault.faultCode in (SPAWN_ERROR, ABNORMAL_TERMINATION):
                raise StartFailed(f"{name} did not start: {fault.faultString}") from None
            raise SupervisorError(f"startProcess({name!r}) failed: {fault.faultString}") from None
        return calls


class StartFailed(AgentError):
    """supervisord started the program and it died or could not be spawned."""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def check_http(service: Service) -> Health:
    if service.health_url is None:
        return Health(True, "no health endpoint configured")
    try:
        with urllib.request.urlopen(service.health_url, timeout=service.health_timeout_seconds) as response:
            status = int(response.status)
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return Health(False, f"GET {service.health_url}: {reason}")
    ok = status == service.expect_status
    return Health(
        ok, f"GET {service.health_url} -> {status}" + ("" if ok else f" (expected {service.expect_status})")
    )


def describe(info: dict[str, Any]) -> str:
    """A program's state as a person reads it: ``RUNNING, pid 42, up 30s`` or ``EXITED, exit status 1``."""
    state = info.get("statename")
    if state == "RUNNING":
        return f"RUNNING, pid {info.get('pid')}, up {int(info.get('now', 0)) - int(info.get('start', 0))}s"
    extra = f", exit status {info.get('exitstatus')}" if state in ("EXITED", "FATAL") else ""
    spawnerr = f", {info.get('spawnerr')}" if info.get("spawnerr") else ""
    return f"{state}{extra}{spawnerr}"
