"""Hot reload: the config file (and the secret and agent-config files it names) is re-read when it changes.

A new version replaces the one in force only when it loads, validates, resolves
its secrets and carries a higher ``version``; otherwise a one-line warning says
why, the refusal is counted, and the old version stays in force. A change only to
a referenced file (a rotated secret) is re-read under the same version.
Polling the files' modification times (every ``--reload-every`` seconds) follows
editors' rename-on-save and Kubernetes' symlink-swapped config maps alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from aiops.gateway.config import ConfigProblem, LoadedConfig, file_stamp, load_config

log = logging.getLogger("aiops.gateway")


class ConfigHolder:
    def __init__(
        self, path: Path, on_change: Callable[[LoadedConfig | None, str], None] | None = None
    ) -> None:
        self.path = path
        self.current = load_config(path)  # the first load must succeed: ConfigProblem otherwise
        self.last_refusal: str | None = None
        self._on_change = on_change
        self._refused_stamps: dict[Path, tuple[float, int] | None] | None = None
        self._notify(self.current, "applied")

    def _notify(self, loaded: LoadedConfig | None, result: str) -> None:
        if self._on_change is not None:
            self._on_change(loaded, result)

    def _stamps(self) -> dict[Path, tuple[float, int] | None]:
        return {p: file_stamp(p) for p in self.current.watched}

    def changed(self) -> bool:
        stamps = self._stamps()
        return stamps != self.current.watched and stamps != self._refused_stamps

    def reload(self) -> bool:
        """Load the file again now; True when a new config is in force."""
        stamps = self._stamps()
        try:
            candidate = load_config(self.path)
            old = self.current
            if candidate.digest != old.digest and candidate.version <= old.version:
                raise ConfigProblem(
                    f"{self.path}: version {candidate.version} is not above the version in force "
                    f"({old.version}); raise version with every change"
                )
        except ConfigProblem as err:
            self._refused_stamps = stamps
            self.last_refusal = str(err)
            log.warning("gateway config refused, version %s stays in force: %s", self.current.version, err)
            self._notify(None, "refused")
            return False
        self.current = candidate
        self._refused_stamps = None
        self.last_refusal = None
        same = candidate.digest == old.digest
        log.info(
            "gateway config version %s in force%s",
            candidate.version,
            " (referenced files re-read)" if same else f" (was {old.version})",
        )
        self._notify(candidate, "applied")
        return True

    async def watch(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if self.changed():
                    self.reload()
            except Exception:  # the watcher must outlive anything a file system can do
                log.exception("gateway config watcher failed a pass")
