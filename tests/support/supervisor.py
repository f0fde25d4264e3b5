"""A real Debian ``supervisor`` for the service agent's tests, supervising a loopback web server.

``supervisord`` comes from Debian's ``supervisor`` package. When it is missing, ``ensure_supervisord``
installs the package (as root, or through ``sudo -n``) with a ``policy-rc.d`` that keeps the package
from starting its system-wide daemon, and stops any daemon it started anyway; when that is impossible
the caller skips with the reason. ``Supervisor`` runs a private ``supervisord`` in the foreground with
a unix socket and a password-protected inet socket, and one program, ``web``: ``python -m http.server``
on a free loopback port, ``autorestart=false`` so that a killed server stays down until someone
(the agent) restarts it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

from tests.support.postgres_server import free_port

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
INSTALL_TIMEOUT = 900
PROGRAM = "web"
USERNAME = "aiops"


class SupervisorUnavailable(Exception):
    """supervisord is not installed and cannot be installed here; the message says why."""


def _run(command: list[str], timeout: float = INSTALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}"


def _supervisord_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"supervisord") for part in cmdline[:2]):
            pids.add(int(entry.name))
    return pids


def _privilege_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is None:
        raise SupervisorUnavailable("supervisord is not installed, and installing it needs root or sudo")
    probe = _run(["sudo", "-n", "true"], timeout=30)
    if probe.returncode != 0:
        raise SupervisorUnavailable(f"supervisord is not installed, and `sudo -n` cannot: {_output(probe)}")
    return ["sudo", "-n"]


def ensure_supervisord() -> str:
    """The path of ``supervisord``, installing Debian's ``supervisor`` package when it is missing."""
    found = shutil.which("supervisord")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise SupervisorUnavailable("supervisord is not installed and there is no apt-get to install it")
    sudo = _privilege_prefix()
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", "supervisor"]
    before = _supervisord_pids()
    created_policy = False
    try:
        if not POLICY_RC_D.exists():  # 101: "do not start services" for invoke-rc.d
            made = _run(
                [
                    *sudo,
                    "sh",
                    "-c",
                    f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}",
                ]
            )
            created_policy = made.returncode == 0
        result = _run(install)
        if result.returncode != 0:
            update = _run([*apt, "update", "-q"])
            if update.returncode != 0:
                raise SupervisorUnavailable(f"apt-get update failed: {_output(update)}")
            result = _run(install)
        if result.returncode != 0:
            raise SupervisorUnavailable(f"cannot install Debian's supervisor package: {_output(result)}")
    finally:
        if created_policy:
            _run([*sudo, "rm", "-f", str(POLICY_RC_D)])
        for pid in _supervisord_pids() - before:  # a system-wide daemon the package started anyway
            _run([*sudo, "kill", str(pid)])
    found = shutil.which("supervisord") or (
        "/usr/bin/supervisord" if Path("/usr/bin/supervisord").exists() else None
    )
    if found is None:
        raise SupervisorUnavailable("Debian's supervisor package installed, but supervisord is not on PATH")
    return found


class Supervisor:
    """A private supervisord and its ``web`` program; ``stop()`` ends both."""

    def __init__(self, startsecs: int = 1, password: str = "s3cret-for-tests") -> None:
        self.supervisord = ensure_supervisord()
        # A short folder: a unix socket path is limited to about 100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="aiops-sv-"))
        self.socket = self.root / "supervisor.sock"
        self.log = self.root / "supervisord.log"
        self.inet_port = free_port()
        self.web_port = free_port()
        self.password = password
        self.www = self.root / "www"
        self.www.mkdir()
        (self.www / "index.html").write_text("ok\n")
        self.conf = self.root / "supervisord.conf"
        self.conf.write_text(
            f"""[unix_http_server]
file={self.socket}
chmod=0700

[inet_http_server]
port=127.0.0.1:{self.inet_port}
username={USERNAME}
password={password}

[supervisord]
nodaemon=true
logfile={self.log}
pidfile={self.root / "supervisord.pid"}
childlogdir={self.root}
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:{PROGRAM}]
command={sys.executable} -m http.server {self.web_port} --bind 127.0.0.1 --directory {self.www}
autostart=true
autorestart=false
startsecs={startsecs}
startretries=0
stopwaitsecs=2
stdout_logfile={self.root / "web.out"}
redirect_stderr=true
"""
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def inet_url(self) -> str:
        return f"http://127.0.0.1:{self.inet_port}/RPC2"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/index.html"

    def start(self) -> Supervisor:
        self.process = subprocess.Popen(
            [self.supervisord, "-n", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_for(lambda: self.state() == "RUNNING" and self.healthy(), within=30)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # supervisord takes a second or more to stop on SIGTERM; kill its program, then it.
            with contextlib.suppress(OSError, xmlrpc.client.Error, ValueError):
                pid = self.pid()
                if pid:
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()  # its only child is gone: nothing is left behind
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    # ----- looking at it ----------------------------------------------------------------------

    def rpc(self) -> Any:
        return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(str(self.socket)))

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.rpc().supervisor.getProcessInfo(PROGRAM)
        return info

    def state(self) -> str | None:
        try:
            return str(self.info()["statename"])
        except (OSError, xmlrpc.client.Error):
            return None

    def pid(self) -> int:
        return int(self.info()["pid"])

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def spawns(self) -> int:
        """How many times supervisord has spawned ``web`` (its own log says so, one line each)."""
        return self.log.read_text().count(f"spawned: '{PROGRAM}'")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the web server behind supervisord's back, and wait until supervisord has noticed."""
        pid = self.pid()
        os.kill(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.wait_for(lambda: self.state() in ("EXITED", "FATAL", "BACKOFF"), within=20)

    @staticmethod
    def wait_for(check: Any, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"supervisor condition not reached in {within}s")
            time.sleep(0.05)

    def basic_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{USERNAME}:{self.password}".encode()).decode()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)
