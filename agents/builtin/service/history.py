"""Which programs this agent restarted and when: what bounds the restarts per window.

Kept per agent in ``state_dir/<agent id>/restarts.jsonl``, one fsync'd JSON line per restart (a line
torn by a crash is skipped), with a per-program ``flock`` so one host restarts a program once at a
time (the kernel releases it if the worker dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class RestartHistory:
    def __init__(self, folder: Path, window_seconds: float) -> None:
        self.folder = folder
        self.window = window_seconds

    def _entries(self, service: str) -> Iterator[dict[str, Any]]:
        try:
            lines = (self.folder / "restarts.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line) if line.strip() else {}
                if isinstance(entry, dict) and entry.get("service") == service:
                    yield entry

    def restarts(self, service: str, now: float | None = None) -> list[float]:
        """When this agent restarted ``service`` within the window (oldest first)."""
        now = time.time() if now is None else now
        times = [float(e.get("at", 0)) for e in self._entries(service)]
        return sorted(t for t in times if now - t <= self.window)

    def last_restart(self, service: str) -> str:
        """The id of the action that last restarted ``service`` (any time), or ""."""
        last = ""
        for entry in self._entries(service):
            last = str(entry.get("action_id", ""))
        return last

    def record_restart(self, service: str, action_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.folder / "restarts.jsonl").open("a") as f:
            f.write("\n" + json.dumps({"service": service, "action_id": action_id, "at": time.time()}) + "\n")
            f.flush()
            os.fsync(f.fileno())

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
