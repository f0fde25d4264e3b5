"""A real Redis (Debian's ``redis-server``) for the Redis Streams tests, on a free port, in a temp dir.

``redis_server_binary()`` finds ``redis-server``, installing the Debian package when it is missing
(as root, or through ``sudo -n``, with a temporary ``policy-rc.d`` so the package starts no service),
or skips with the reason: scripts/setup.sh does not need it. ``RedisServer`` runs one server with an
append-only file fsynced at every write, so ``restart()`` (a stop and a start on the same port and
directory) keeps every entry, group and pending list, as a production Redis with AOF would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
INSTALL_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip().startswith("redis-server"):
                    pids.add(int(entry.name))
    return pids


def _install() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("redis-server is not installed and there is no apt-get to install it")
    sudo: list[str] = []
    if os.geteuid() != 0:
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True, check=False)
        if shutil.which("sudo") is None or probe.returncode != 0:
            pytest.skip("redis-server is not installed, and installing it needs root or `sudo -n`")
        sudo = ["sudo", "-n"]
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", "redis-server"]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)

    before = _redis_pids()
    created_policy = False
    try:
        if not POLICY_RC_D.exists():  # 101: "do not start services"
            script = f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D}; chmod 755 {POLICY_RC_D}"
            created_policy = run([*sudo, "sh", "-c", script]).returncode == 0
        result = run(install)
        if result.returncode != 0:
            run([*apt, "update", "-q"])
            result = run(install)
        if result.returncode != 0:
            pytest.skip(f"cannot install Debian's redis-server: {result.stderr.strip()[-500:]}")
    finally:
        if created_policy:
            run([*sudo, "rm", "-f", str(POLICY_RC_D)])
        for pid in _redis_pids() - before:  # a service the package started anyway
            run([*sudo, "kill", str(pid)])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        _install()
        found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server installed, but not on PATH")
    return found


class RedisServer:
    """One redis-server on a free loopback port; its data in a temporary directory."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self.folder = Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.folder / "redis.log").read_text()
                raise AssertionError(f"redis-server did not start:\n{log_text}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
