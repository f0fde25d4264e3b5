"""Headless Chromium for the Web UI test: install Debian's package if needed, launch it, keep evidence.

The browser is Debian's ``chromium`` (playwright's own browser builds are a
download this project cannot rely on). Nothing here passes silently: when the
browser cannot be had, :class:`BrowserUnavailable` says exactly why, and the
test skips with that reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_TIMEOUT_SECONDS = 480  # per apt-get command


class BrowserUnavailable(Exception):
    """Chromium could not be installed or started; the message is the reason."""


@dataclass
class ChromiumInstall:
    path: str
    installed_now: bool = False
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_chromium(path: str = CHROMIUM) -> ChromiumInstall:
    """Return Debian's Chromium, installing it with apt-get (as root, or through ``sudo -n``) if missing."""
    if _runs(path):
        return ChromiumInstall(path=path)
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable(f"{path} is missing and this machine has no apt-get to install chromium")
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") is not None:
        prefix = ["sudo", "-n"]
    else:
        raise BrowserUnavailable(f"{path} is missing, and installing chromium needs root (no sudo here)")
    started = time.monotonic()
    log: list[str] = []
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if not _apt(install, log):
        # Only refresh the package lists when the install failed without it.
        if not _apt([*prefix, "apt-get", "update"], log):
            raise BrowserUnavailable("apt-get update failed: " + _tail(log))
        if not _apt(install, log):
            raise BrowserUnavailable("apt-get install -y chromium failed: " + _tail(log))
    if not _runs(path):
        raise BrowserUnavailable(f"chromium was installed but {path} does not run: " + _tail(log))
    return ChromiumInstall(path=path, installed_now=True, seconds=time.monotonic() - started, log=log)


def _apt(command: list[str], log: list[str]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.append(f"$ {' '.join(command)}\n{err}")
        return False
    log.append(f"$ {' '.join(command)} -> exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.returncode == 0


def _runs(path: str) -> bool:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _tail(log: list[str]) -> str:
    return log[-1][-1500:] if log else "(no output)"


DEFAULT_VIEWPORT = {"width": 1600, "height": 1000}
# An ordinary laptop screen: the approval inbox's columns must fit it (docs/web-ui.md).
LAPTOP_VIEWPORT = {"width": 1440, "height": 900}


async def launch_chromium(
    playwright: Any, path: str, user_data_dir: Path, viewport: dict[str, int] | None = None
) -> Any:
    """A headless Chromium context on a new, empty profile, ``viewport`` wide (1600x1000 unless told).

    Playwright refuses ``--user-data-dir`` in ``args``; a persistent context
    passes the same flag itself.
    """
    await asyncio.to_thread(user_data_dir.mkdir, parents=True, exist_ok=False)
    try:
        return await playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=path,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=viewport or DEFAULT_VIEWPORT,
            timeout=60_000,
        )
    except Exception as err:
        raise BrowserUnavailable(f"{path} did not start: {err}") from err


class Evidence:
    """Screenshots per step into a directory, and the page's text for failure messages."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.steps: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)

    async def shot(self, name: str) -> Path:
        path = self.directory / f"{len(self.steps) + 1:02d}-{name}.png"
        self.steps.append(name)
        try:
            await self.page.screenshot(path=str(path), full_page=True)
        except Exception as err:  # evidence must never hide the real failure
            path.with_suffix(".txt").write_text(f"screenshot failed: {err}")
        return path

    async def all_text(self) -> str:
        """The text of the page and of every frame in it (the UI renders markdown in iframes)."""
        parts = []
        for frame in self.page.frames:
            try:
                parts.append(str(await frame.locator("body").inner_text(timeout=2_000)))
            except Exception:  # a frame may navigate or detach while being read
                continue
        return "\n".join(parts)

    async def wait_for_text(self, needles: Iterable[str], within: float = 30.0) -> str:
        """Poll the page and its frames until every needle is shown; return the text seen."""
        wanted = list(needles)
        deadline = time.monotonic() + within
        while True:
            text = await self.all_text()
            missing = [n for n in wanted if n not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"not shown within {within}s: {missing!r}")
            await self.page.wait_for_timeout(250)

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """One step of the scenario: a screenshot after it, the page's text in its failure."""
        try:
            yield
        except Exception as err:
            raise AssertionError(await self.context(f"step {name!r} failed: {err}")) from err
        await self.shot(name)

    async def context(self, what: str) -> str:
        """A failure message: what failed, the URL, the screenshots, and the page's text."""
        await self.shot("failure")
        text = re.sub(r"\n\s*\n+", "\n", await self.all_text())
        return (
            f"{what}\nurl: {self.page.url}\nscreenshots in {self.directory}\n"
            f"--- the page's text, then its frames' ---\n{text[:8000]}"
        )
