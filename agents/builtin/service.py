"""The ``service`` agent: a supervised process that died or stopped answering, restarted and checked.

It watches programs run by Debian's ``supervisor`` (their state over supervisor's XML-RPC API, on its
unix or inet socket) and, optionally, an HTTP health endpoint per program. A program that exited or
failed to start, or that runs but whose endpoint fails, is restarted through the same API
(``stopProcess`` then ``startProcess``, or only ``startProcess`` when it is down); verification
waits for state RUNNING and a healthy endpoint.

Restarts are bounded: at most ``max_restarts`` per ``restart_window_seconds`` per program. Beyond
the limit the agent does not loop: it still proposes the restart, but as an *escalated* action of
risk ``escalation_risk`` (high by default), which the approval policy always sends to a person, with
the restart history in its description and plan. A restart the policy ran automatically re-checks
the limit when it executes and refuses (a failed action, nothing restarted) if it was reached since.

Execution is idempotent by ``action.id``: before restarting, the agent writes an intent marker
(keyed by the action id, with supervisor's clock and the old pid) in ``state_dir``; a retried
execution that finds the marker and a process started after it does not restart again, it only
waits for the result. A program that is healthy again by the time the action runs is left alone.
A restart cannot be undone, so there is no rollback: a failed verification fails the action.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.base_agent import BaseAgent
from agents.registry import register_agent
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentConfig,
    EventType,
    Plan,
    RiskLevel,
    Severity,
    SystemEvent,
)

ACTION_KIND = "service_restart"
DOWN_STATES = frozenset({"EXITED", "FATAL", "UNKNOWN"})
MAX_WINDOW = 7 * 24 * 3600
PROGRAM_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

# supervisor's XML-RPC fault codes (supervisor.xmlrpc.Faults)
BAD_NAME = 10
ABNORMAL_TERMINATION = 40
SPAWN_ERROR = 50
ALREADY_STARTED = 60
NOT_RUNNING = 70

SETTINGS = {
    "supervisor": "{url, username, password, timeout_seconds}: how to reach supervisord",
    "services": "programs to watch: "
    "[{name, health_url, expect_status, health_timeout_seconds, grace_seconds}]",
    "max_restarts": "restarts per program per window before escalating (default 3)",
    "restart_window_seconds": "the window of max_restarts (default 3600)",
    "verify_timeout_seconds": "how long verification waits for RUNNING and healthy (default 30)",
    "restart_stopped": "also restart programs in state STOPPED, i.e. stopped by a person (default false)",
    "risk_when_down": "risk of restarting a program that is down (default low)",
    "risk_when_unhealthy": "risk of restarting a running program whose health check fails (default medium)",
    "escalation_risk": "risk of a restart beyond the limit (default high; high or critical)",
    "state_dir": "where restart history and idempotency markers live (default /var/lib/aiops/service)",
}
SUPERVISOR_SETTINGS = ("url", "username", "password", "timeout_seconds")
SERVICE_SETTINGS = ("name", "health_url", "expect_status", "health_timeout_seconds", "grace_seconds")


# ----- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    health_url: str | None = None
    expect_status: int = 200
    health_timeout_seconds: float = 2.0
    grace_seconds: float = 10.0


@dataclass(frozen=True)
class ServiceSettings:
    url: str
    services: tuple[Service, ...]
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 10.0
    max_restarts: int = 3
    restart_window_seconds: float = 3600.0
    verify_timeout_seconds: float = 30.0
    restart_stopped: bool = False
    risk_when_down: RiskLevel = RiskLevel.LOW
    risk_when_unhealthy: RiskLevel = RiskLevel.MEDIUM
    escalation_risk: RiskLevel = RiskLevel.HIGH
    state_dir: str = "/var/lib/aiops/service"

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _url_problem(url: Any, where: str, unix: bool) -> str | None:
    if not isinstance(url, str) or not url or len(url) > 2048 or any(c in url for c in "\0\r\n "):
        return f"{where} must be a URL string without spaces or control characters"
    if unix and url.startswith("unix://"):
        path = url.removeprefix("unix://")
        if not path.startswith("/") or os.path.normpath(path) != path:
            return f"{where}: a unix socket URL is unix:// and an absolute path, e.g. unix:///run/supervisor.sock"
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        kinds = (
            "unix:///path/to/supervisor.sock or http://host:port/RPC2" if unix else "http(s)://host:port/path"
        )
        return f"{where} must look like {kinds}"
    if parsed.username or parsed.password:
        return f"{where}: put credentials in username / password (a secret reference), not in the URL"
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{where}: the port is not a number between 0 and 65535"
    return None


def parse_settings(raw: dict[str, Any]) -> tuple[ServiceSettings | None, list[str]]:
    """The settings, or None and every problem found (``settings.<name>: what is wrong``)."""
    problems: list[str] = []
    for key in raw:
        if key not in SETTINGS:
            problems.append(
                f"settings.{key}: unknown setting for the service agent (known: {', '.join(SETTINGS)})"
            )

    def number(where: str, value: Any, default: float, low: float, high: float, integer: bool = False) -> Any:
        if value is None:
            return default
        if not _is_number(value) or (integer and not isinstance(value, int)):
            problems.append(
                f"{where} must be {'an integer' if integer else 'a number'} between {low:g} and {high:g}"
            )
            return default
        if not low <= value <= high:
            problems.append(f"{where} is {value}; it must be between {low:g} and {high:g}")
            return default
        return value

    sup = raw.get("supervisor", {})
    url, username, password, timeout = "unix:///var/run/supervisor.sock", None, None, 10.0
    if not isinstance(sup, dict):
        problems.append("settings.supervisor must be an object {url, username, password, timeout_seconds}")
    else:
        for key in sup:
            if key not in SUPERVISOR_SETTINGS:
                problems.append(
                    f"settings.supervisor.{key}: unknown (known: {', '.join(SUPERVISOR_SETTINGS)})"
                )
        url = sup.get("url", url)
        problem = _url_problem(url, "settings.supervisor.url", unix=True)
        if problem:
            problems.append(problem)
        username, password = sup.get("username"), sup.get("password")
        if username is not None and (not isinstance(username, str) or not 0 < len(username) <= 200):
            problems.append("settings.supervisor.username must be a string of 1 to 200 characters")
        if password is not None and not isinstance(password, str):
            problems.append(
                'settings.supervisor.password must be a secret reference such as "env:SUPERVISOR_PASSWORD"'
            )
        if password is not None and username is None:
            problems.append("settings.supervisor.username is required with a password")
        timeout = number("settings.supervisor.timeout_seconds", sup.get("timeout_seconds"), 10.0, 0.1, 300)

    services: list[Service] = []
    raw_services = raw.get("services")
    if not isinstance(raw_services, list) or not raw_services:
        problems.append(
            'settings.services is required: a list of supervisor programs, e.g. [{"name": "web", '
            '"health_url": "http://127.0.0.1:8080/healthz"}]'
        )
    else:
        if len(raw_services) > 100:
            problems.append("settings.services lists more than 100 programs")
        for i, item in enumerate(raw_services[:100]):
            where = f"settings.services[{i}]"
            if not isinstance(item, dict):
                problems.append(f"{where} must be an object {{name, health_url, ...}}")
                continue
            before = len(problems)
            for key in item:
                if key not in SERVICE_SETTINGS:
                    problems.append(f"{where}.{key}: unknown (known: {', '.join(SERVICE_SETTINGS)})")
            name = item.get("name")
            if not isinstance(name, str) or not PROGRAM_NAME.match(name):
                problems.append(
                    f"{where}.name must be a supervisor program name (letters, digits, _ . : -, "
                    "at most 128; 'group:program' for a program in a group)"
                )
            health_url = item.get("health_url")
            if health_url is not None:
                problem = _url_problem(health_url, f"{where}.health_url", unix=False)
                if problem:
                    problems.append(problem)
            expect = number(f"{where}.expect_status", item.get("expect_status"), 200, 100, 599, integer=True)
            health_timeout = number(
                f"{where}.health_timeout_seconds", item.get("health_timeout_seconds"), 2.0, 0.1, 60
            )
            grace = number(f"{where}.grace_seconds", item.get("grace_seconds"), 10.0, 0, 3600)
            if len(problems) == before:
                services.append(
                    Service(str(name), health_url, int(expect), float(health_timeout), float(grace))
                )
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            problems.append("settings.services lists a program twice")

    max_restarts = number("settings.max_restarts", raw.get("max_restarts"), 3, 0, 100, integer=True)
    window = number(
        "settings.restart_window_seconds", raw.get("restart_window_seconds"), 3600.0, 1, MAX_WINDOW
    )
    verify_timeout = number(
        "settings.verify_timeout_seconds", raw.get("verify_timeout_seconds"), 30.0, 1, 600
    )
    restart_stopped = raw.get("restart_stopped", False)
    if not isinstance(restart_stopped, bool):
        problems.append("settings.restart_stopped must be true or false")

    def risk(name: str, default: RiskLevel, allowed: tuple[RiskLevel, ...] = tuple(RiskLevel)) -> RiskLevel:
        value = raw.get(name)
        if value is None:
            return default
        try:
            level = RiskLevel(value)
        except ValueError:
            level = None
        if level not in allowed:
            problems.append(f"settings.{name} must be one of {', '.join(r.value for r in allowed)}")
            return default
        assert level is not None
        return level

    risk_down = risk("risk_when_down", RiskLevel.LOW)
    risk_unhealthy = risk("risk_when_unhealthy", RiskLevel.MEDIUM)
    escalation = risk("escalation_risk", RiskLevel.HIGH, (RiskLevel.HIGH, RiskLevel.CRITICAL))
    state_dir = raw.get("state_dir", ServiceSettings.state_dir)
    if (
        not isinstance(state_dir, str)
        or not state_dir.startswith("/")
        or os.path.normpath(state_dir) != state_dir
    ):
        problems.append(
            "settings.state_dir must be an absolute path in normal form, e.g. /var/lib/aiops/service"
        )
    elif state_dir == "/" or any(state_dir.startswith(p) for p in ("/proc", "/sys", "/dev", "/etc", "/usr")):
        problems.append(f"settings.state_dir: {state_dir!r} is a system directory; use a dedicated folder")
    if problems:
        return None, problems
    return (
        ServiceSettings(
            url=str(url),
            services=tuple(services),
            username=username,
            password=password,
            timeout_seconds=float(timeout),
            max_restarts=int(max_restarts),
            restart_window_seconds=float(window),
            verify_timeout_seconds=float(verify_timeout),
            restart_stopped=restart_stopped,
            risk_when_down=risk_down,
            risk_when_unhealthy=risk_unhealthy,
            escalation_risk=escalation,
            state_dir=state_dir,
        ),
        [],
    )


# ----- talking to supervisord ------------------------------------------------------------------------------


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


class SupervisorError(Exception):
    """supervisord could not be reached or refused the call; the message never holds the password."""


class Supervisor:
    """Blocking calls to supervisord's XML-RPC interface (run them in a thread)."""

    def __init__(self, settings: ServiceSettings) -> None:
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


class StartFailed(Exception):
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


def _describe(info: dict[str, Any]) -> str:
    state = info.get("statename")
    if state == "RUNNING":
        return f"RUNNING, pid {info.get('pid')}, up {int(info.get('now', 0)) - int(info.get('start', 0))}s"
    extra = f", exit status {info.get('exitstatus')}" if state in ("EXITED", "FATAL") else ""
    spawnerr = f", {info.get('spawnerr')}" if info.get("spawnerr") else ""
    return f"{state}{extra}{spawnerr}"


# ----- durable state: restart history and idempotency markers -------------------------------------------


class State:
    def __init__(self, settings: ServiceSettings, agent_id: str) -> None:
        self.folder = Path(settings.state_dir) / agent_id
        self.window = settings.restart_window_seconds

    def restarts(self, service: str, now: float | None = None) -> list[float]:
        """When this agent restarted ``service`` within the window (oldest first)."""
        now = time.time() if now is None else now
        try:
            lines = (self.folder / "restarts.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        times = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("service") == service and now - float(entry.get("at", 0)) <= self.window:
                times.append(float(entry["at"]))
        return sorted(times)

    def last_restart(self, service: str) -> str:
        """The id of the action that last restarted ``service`` (any time), or ""."""
        last = ""
        with contextlib.suppress(FileNotFoundError):
            for line in (self.folder / "restarts.jsonl").read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    if entry.get("service") == service:
                        last = str(entry.get("action_id", ""))
        return last

    def record_restart(self, service: str, action_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.folder / "restarts.jsonl").open("a") as f:
            f.write("\n" + json.dumps({"service": service, "action_id": action_id, "at": time.time()}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def marker_path(self, action_id: str) -> Path:
        return self.folder / "actions" / f"{hashlib.sha256(action_id.encode()).hexdigest()[:40]}.json"

    def marker(self, action_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.marker_path(action_id).read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def save_marker(self, action_id: str, data: dict[str, Any]) -> None:
        path = self.marker_path(action_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".partial")
        with temporary.open("w") as f:
            json.dump({**data, "action_id": action_id}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)

    @contextlib.contextmanager
    def lock(self, service: str) -> Iterator[None]:
        """One restart of a program at a time on this host (released by the kernel if we die)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        safe = hashlib.sha256(service.encode()).hexdigest()[:16]
        with (self.folder / f"{safe}.lock").open("a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "service"


# ----- the agent ------------------------------------------------------------------------------------------


@register_agent("service")
class ServiceAgent(BaseAgent):
    """Watches supervisor programs and restarts them, boundedly (see the module docstring)."""

    @property
    def settings(self) -> ServiceSettings:
        parsed, problems = parse_settings(self.config.settings)
        if parsed is None:
            raise NonRetryableActionError("; ".join(problems))
        return parsed

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.HEALTH_CHECK, EventType.ALERT]

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return parse_settings(config.settings)[1]

    # ----- detect ---------------------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        return await asyncio.to_thread(self._detect, self.settings)

    def _detect(self, settings: ServiceSettings) -> list[SystemEvent]:
        supervisor = Supervisor(settings)
        state_of = State(settings, self.agent_id)
        events = []
        for service in settings.services:
            try:
                info = supervisor.info(service.name)
            except NonRetryableActionError as err:
                self.logger.warning("service agent %s: %s", self.agent_id, err)
                continue
            state = str(info["statename"])
            down = state in DOWN_STATES or (state == "STOPPED" and settings.restart_stopped)
            health = None
            if down:
                kind = "down"
                # One occurrence: this program down since this stop, after the last restart this agent
                # made (supervisord's times are in whole seconds: two deaths in one second look alike).
                last = state_of.last_restart(service.name)
                occurrence = f"{service.name}|down|{state}|{info.get('start')}|{info.get('stop')}|{last}"
            elif state == "RUNNING" and service.health_url:
                if int(info["now"]) - int(info["start"]) < service.grace_seconds:
                    continue
                health = check_http(service)
                if health.ok:
                    continue
                kind = "unhealthy"
                # One occurrence: this incarnation (pid and start time) failing its check.
                occurrence = f"{service.name}|unhealthy|{info.get('pid')}|{info.get('start')}"
            else:
                continue
            digest = hashlib.sha256(occurrence.encode()).hexdigest()[:16]
            events.append(
                SystemEvent(
                    id=f"svc-{_slug(service.name)}-{kind}-{digest}",
                    type=EventType.HEALTH_CHECK,
                    source=f"supervisor:{service.name}",
                    severity=Severity.HIGH if kind == "down" else Severity.MEDIUM,
                    data={
                        "kind": kind,
                        "service": service.name,
                        "healthy": False,
                        "state": state,
                        "pid": info.get("pid"),
                        "start": info.get("start"),
                        "stop": info.get("stop"),
                        "exitstatus": info.get("exitstatus"),
                        "spawnerr": info.get("spawnerr"),
                        "health": health.detail if health else None,
                    },
                )
            )
        return events

    # ----- decide ---------------------------------------------------------------------------------------

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        settings = self.settings
        if event.type == EventType.ALERT:
            if event.data.get("status") == "resolved":
                return None
            labels = event.data.get("labels") or {}
            name = next(
                (labels.get(k) for k in ("service", "program", "supervisor_program") if labels.get(k)), None
            )
            kind = "alert"
        else:
            if event.data.get("healthy") is True:
                return None
            name, kind = event.data.get("service"), str(event.data.get("kind") or "unhealthy")
        service = settings.service(name) if isinstance(name, str) else None
        if service is None:
            return None
        state = State(settings, self.agent_id)
        recent = await asyncio.to_thread(state.restarts, service.name)
        escalated = len(recent) >= settings.max_restarts
        if escalated:
            risk = settings.escalation_risk
            why = (
                f"restart limit reached: {len(recent)} restart(s) in the last "
                f"{settings.restart_window_seconds:g}s (max {settings.max_restarts}); "
                "escalated, a person decides"
            )
        else:
            risk = settings.risk_when_down if kind == "down" else settings.risk_when_unhealthy
            why = (
                f"{len(recent)} of {settings.max_restarts} restart(s) used in the last "
                f"{settings.restart_window_seconds:g}s"
            )
        what = {"down": "is down", "unhealthy": "fails its health check", "alert": "is alerting"}.get(
            kind, kind
        )
        return AgentAction(
            id="-",
            agent_id=self.agent_id,
            type=ActionType.RESTART_SERVICE,
            description=f"Restart {service.name}: it {what} ({why})",
            target_resources=[f"supervisor:{service.name}"],
            risk_level=risk,
            estimated_impact=(
                "starts a program that is down"
                if kind == "down"
                else "stops and starts the program: a short interruption of what it serves"
            ),
            parameters={
                "kind": ACTION_KIND,
                "service": service.name,
                "trigger": kind,
                "escalated": escalated,
                "restarts_in_window": len(recent),
            },
        )

    def _service_of(self, action: AgentAction, settings: ServiceSettings) -> Service:
        name = action.parameters.get("service")
        service = settings.service(name) if isinstance(name, str) else None
        if action.parameters.get("kind") != ACTION_KIND or service is None:
            raise NonRetryableActionError(f"not a restart of a watched program: {name!r}")
        return service

    # ----- plan -----------------------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        settings = self.settings
        service = self._service_of(action, settings)
        return await asyncio.to_thread(self._plan, action, settings, service)

    def _plan(self, action: AgentAction, settings: ServiceSettings, service: Service) -> Plan:
        supervisor = Supervisor(settings)
        info = supervisor.info(service.name)  # unreachable supervisord: retried, then the action fails
        state = str(info["statename"])
        health = check_http(service) if state == "RUNNING" else None
        running = state in ("RUNNING", "STARTING", "BACKOFF")
        changes = ([f"supervisor.stopProcess({service.name!r}, wait=True)"] if running else []) + [
            f"supervisor.startProcess({service.name!r}, wait=True)"
        ]
        recent = State(settings, self.agent_id).restarts(service.name)
        verb = "stop and start" if running else "start"
        details = [
            f"supervisord: {settings.url}",
            f"now: {service.name} is {_describe(info)}" + (f"; {health.detail}" if health else ""),
            f"restarts by this agent in the last {settings.restart_window_seconds:g}s: {len(recent)} "
            f"(limit {settings.max_restarts})"
            + (
                "; ESCALATED: the limit is reached, this restart runs only with approval"
                if action.parameters.get("escalated")
                else ""
            ),
            "verify: state RUNNING"
            + (f" and GET {service.health_url} -> {service.expect_status}" if service.health_url else "")
            + f" within {settings.verify_timeout_seconds:g}s",
            "if the program is healthy again when the action runs, nothing is restarted; "
            "a restart cannot be rolled back",
        ]
        return Plan(
            summary=f"{verb} {service.name} through supervisord ({_describe(info)})",
            details="\n".join(details),
            changes=changes,
        )

    # ----- execute --------------------------------------------------------------------------------------

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        settings = self.settings
        service = self._service_of(action, settings)
        return await asyncio.to_thread(self._execute, action, settings, service)

    def _execute(self, action: AgentAction, settings: ServiceSettings, service: Service) -> ActionResult:
        state = State(settings, self.agent_id)
        with state.lock(service.name):
            marker = state.marker(action.id)
            if marker is not None and marker.get("result") is not None:
                return ActionResult.model_validate(marker["result"])  # done before: the same answer
            result = self._restart_once(action, settings, service, state, marker)
            saved = state.marker(action.id) or {}
            state.save_marker(action.id, {**saved, "result": result.model_dump(mode="json")})
            return result

    def _restart_once(
        self,
        action: AgentAction,
        settings: ServiceSettings,
        service: Service,
        state: State,
        marker: dict[str, Any] | None,
    ) -> ActionResult:
        supervisor = Supervisor(settings)
        name = service.name
        info = supervisor.info(name)
        if marker is None:
            if info["statename"] == "RUNNING" and check_http(service).ok:
                return ActionResult(
                    success=True,
                    message=f"{name} is healthy again ({_describe(info)}): nothing restarted",
                    data={"service": name, "restarted": False, "pid": info.get("pid")},
                )
            recent = state.restarts(name)
            if not action.parameters.get("escalated") and len(recent) >= settings.max_restarts:
                return ActionResult(
                    success=False,
                    message=(
                        f"not restarted: {len(recent)} restart(s) of {name} in the last "
                        f"{settings.restart_window_seconds:g}s reached the limit after the decision"
                    ),
                    error="restart limit reached; the next event escalates to a person",
                    data={"service": name, "restarted": False},
                )
            # The intent comes first, so that a retry knows a restart may already be under way.
            marker = {"intent_at": int(info["now"]), "pid_before": info.get("pid")}
            state.save_marker(action.id, marker)
            state.record_restart(name, action.id)
            redo = True
        else:
            # A retry after a crash mid-restart: was the program started after the intent?
            started = int(info.get("start") or 0) >= int(marker["intent_at"])
            new_process = info.get("pid") != marker.get("pid_before")
            redo = not (started and new_process and info["statename"] in ("STARTING", "RUNNING"))
        calls: list[str] = []
        try:
            if redo:
                calls = supervisor.restart(name, info)
            else:
                self._wait_running(supervisor, name, settings.verify_timeout_seconds)
        except StartFailed as err:
            return ActionResult(success=False, message=str(err), error=str(err), data={"service": name})
        after = supervisor.info(name)
        ok = after["statename"] == "RUNNING"
        done = "restarted" if redo else "an earlier attempt had already restarted"
        return ActionResult(
            success=ok,
            message=f"{done} {name}: {_describe(after)}",
            error=None if ok else f"{name} is {after['statename']} after the restart",
            data={
                "service": name,
                "restarted": True,
                "calls": calls,
                "pid_before": marker.get("pid_before"),
                "pid_after": after.get("pid"),
            },
        )

    @staticmethod
    def _wait_running(supervisor: Supervisor, name: str, within: float) -> None:
        deadline = time.monotonic() + within
        while supervisor.info(name)["statename"] == "STARTING" and time.monotonic() < deadline:
            time.sleep(0.2)

    # ----- verify ---------------------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        settings = self.settings
        service = self._service_of(action, settings)
        return await asyncio.to_thread(self._verify, settings, service)

    def _verify(self, settings: ServiceSettings, service: Service) -> bool:
        supervisor = Supervisor(settings)
        deadline = time.monotonic() + settings.verify_timeout_seconds
        while True:
            info = supervisor.info(service.name)
            health = check_http(service) if info["statename"] == "RUNNING" else None
            if health is not None and health.ok:
                return True
            if time.monotonic() > deadline or info["statename"] in DOWN_STATES:
                self.logger.warning(
                    "verify %s: %s is %s%s",
                    service.name,
                    service.name,
                    _describe(info),
                    f"; {health.detail}" if health else "",
                )
                return False
            time.sleep(0.2)

    # ----- health ---------------------------------------------------------------------------------------

    async def _health_check_specific(self) -> dict[str, bool]:
        return await asyncio.to_thread(self._health, self.settings)

    @staticmethod
    def _health(settings: ServiceSettings) -> dict[str, bool]:
        supervisor = Supervisor(settings)
        checks: dict[str, bool] = {}
        try:
            checks["supervisord reachable"] = (
                supervisor.call("supervisor.getState").get("statename") == "RUNNING"
            )
        except (SupervisorError, xmlrpc.client.Fault):
            return {"supervisord reachable": False}
        for service in settings.services:
            try:
                supervisor.info(service.name)
                checks[f"{service.name} known to supervisord"] = True
            except (NonRetryableActionError, SupervisorError):
                checks[f"{service.name} known to supervisord"] = False
        return checks
