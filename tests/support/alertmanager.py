"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) for the gateway tests.

``alertmanager_binaries()`` finds ``prometheus-alertmanager`` and ``amtool``, installing
the Debian package when they are missing (as root, or through ``sudo -n``, with a
temporary ``policy-rc.d`` so the package starts no service), or skips with the reason.
``Alertmanager`` runs one server per test on a free loopback port, without gossip,
with a webhook receiver pointed at the gateway; ``fire`` runs ``amtool alert add``.
``TcpProxy`` stands between a client and a real server so a test can cut the
connection (and restore it) without stopping the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
INSTALL_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alertmanager_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip().startswith("prometheus-ale"):
                    pids.add(int(entry.name))
    return pids


def _install() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("prometheus-alertmanager is not installed and there is no apt-get to install it")
    sudo: list[str] = []
    if os.geteuid() != 0:
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True, check=False)
        if shutil.which("sudo") is None or probe.returncode != 0:
            pytest.skip("prometheus-alertmanager is not installed, and installing it needs root or `sudo -n`")
        sudo = ["sudo", "-n"]
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", "prometheus-alertmanager"]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)

    before = _alertmanager_pids()
    created_policy = False
    try:
        if not POLICY_RC_D.exists():  # 101: "do not start services"
            made = run(
                [
                    *sudo,
                    "sh",
                    "-c",
                    f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D}; chmod 755 {POLICY_RC_D}",
                ]
            )
            created_policy = made.returncode == 0
        result = run(install)
        if result.returncode != 0:
            run([*apt, "update", "-q"])
            result = run(install)
        if result.returncode != 0:
            pytest.skip(f"cannot install Debian's prometheus-alertmanager: {result.stderr.strip()[-500:]}")
    finally:
        if created_policy:
            run([*sudo, "rm", "-f", str(POLICY_RC_D)])
        for pid in _alertmanager_pids() - before:  # a service the package started anyway
            run([*sudo, "kill", str(pid)])


def alertmanager_binaries() -> tuple[str, str]:
    server, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    if server is None or amtool is None:
        _install()
        server, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    if server is None or amtool is None:
        pytest.skip("prometheus-alertmanager installed, but its binaries are not on PATH")
    return server, amtool


class Alertmanager:
    """One Alertmanager whose only receiver is the gateway's webhook."""

    def __init__(
        self,
        webhook_url: str,
        bearer_token: str | None = None,
        group_by: tuple[str, ...] = ("alertname",),
        group_interval: str = "500ms",
        repeat_interval: str = "1h",
        max_alerts: int = 0,
    ) -> None:
        self.server_bin, self.amtool_bin = alertmanager_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="alertmanager-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        webhook: dict = {"url": webhook_url, "send_resolved": True}
        if max_alerts:  # the webhook then sends at most this many alerts of a group, and truncatedAlerts
            webhook["max_alerts"] = max_alerts
        if bearer_token is not None:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer_token}}
        config = {
            "route": {
                "receiver": "aiops",
                "group_by": list(group_by),
                "group_wait": "100ms",
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [{"name": "aiops", "webhook_configs": [webhook]}],
        }
        (self.folder / "am.yml").write_text(json.dumps(config))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        log = (self.folder / "alertmanager.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.server_bin,
                f"--config.file={self.folder / 'am.yml'}",
                f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"alertmanager did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return (self.folder / "alertmanager.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def fire(
        self,
        annotations: dict[str, str] | None = None,
        end: str | None = None,
        generator_url: str = "",
        **labels: str,
    ) -> None:
        """``amtool alert add`` (``end`` in the past resolves the alert); run without blocking the loop."""
        args = [f"{k}={v}" for k, v in labels.items()]
        args += [f"--annotation={k}={v}" for k, v in (annotations or {}).items()]
        if end:
            args.append(f"--end={end}")
        if generator_url:
            args.append(f"--generator-url={generator_url}")
        process = await asyncio.create_subprocess_exec(
            self.amtool_bin,
            f"--alertmanager.url={self.url}",
            "alert",
            "add",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0, f"amtool failed: {out.decode()}"

    async def notifications(self) -> tuple[float, float]:
        """Alertmanager's own count of webhook requests sent and failed (each retry is a request)."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.url}/metrics")).text
        sent = failed = 0.0
        for line in text.splitlines():
            if 'integration="webhook"' not in line:
                continue
            if line.startswith("alertmanager_notification_requests_total"):
                sent = float(line.rsplit(" ", 1)[1])
            elif line.startswith("alertmanager_notification_requests_failed_total"):
                failed += float(line.rsplit(" ", 1)[1])
        return sent, failed


class TcpProxy:
    """Forwards a loopback port to ``target``; ``cut()`` drops every connection and stops listening."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
