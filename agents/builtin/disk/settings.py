"""The disk agent's settings: which mounts to watch, and the only folders it may ever clean.

Every rule that keeps the agent away from data that is not its to remove is checked here, before a
config version is stored: roots are absolute, normal, outside the system trees and on a watched
mount; globs name files, never folders or everything; the agent's own folders overlap no root.
"""

from __future__ import annotations

import os
import stat
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, model_validator

from agents.builtin.common import AbsolutePath, OwnFolder, inside
from agents.settings import AgentSettings, SettingProblems, Where, distinct
from aiops.contracts.models import RiskLevel

Mode = Literal["delete", "quarantine"]
DELETE: Mode = "delete"
QUARANTINE: Mode = "quarantine"
DEFAULT_RISK: dict[str, RiskLevel] = {DELETE: RiskLevel.MEDIUM, QUARANTINE: RiskLevel.LOW}
TEN_YEARS = 10 * 366 * 24 * 3600

# Directories that are never a cleanup root, and trees no root may be inside.
FORBIDDEN_ROOTS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
     "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/var/lib",
     "/var/cache", "/snap"}
)  # fmt: skip
FORBIDDEN_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                   "/sbin", "/sys", "/usr", "/var/lib")  # fmt: skip


def cleanup_root(path: str) -> str:
    if path in FORBIDDEN_ROOTS:
        raise ValueError(
            f"{path!r} may not be a cleanup root (it holds the system or everyone's data); "
            "name the folder that holds the files, e.g. /var/log/myapp"
        )
    if any(inside(path, tree) for tree in FORBIDDEN_TREES):
        raise ValueError(f"{path!r} lies in a system directory; the disk agent never cleans there")
    return path


def file_glob(glob: str) -> str:
    if "/" in glob or "\0" in glob:
        raise ValueError(f"{glob!r} must match file names only (no '/'); use the root's path for the folder")
    if "**" in glob:
        raise ValueError(f"{glob!r}: '**' is not supported; set recursive: true on the root instead")
    if glob.strip("*?.") == "":
        raise ValueError(
            f"{glob!r} matches every file name; name what may be removed "
            "(for example '*.log.[0-9]*', '*.gz', 'upload-*.tmp')"
        )
    depth = 0
    for char in glob:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        raise ValueError(f"{glob!r} has an unclosed '['")
    return glob


Glob = Annotated[str, Field(strict=True, min_length=1, max_length=255), AfterValidator(file_glob)]


class Root(AgentSettings):
    """A folder the agent may clean, and which files in it."""

    path: Annotated[AbsolutePath, AfterValidator(cleanup_root)] = Field(
        description="the folder that holds the files to clean, e.g. /var/log/myapp"
    )
    globs: list[Glob] = Field(
        min_length=1,
        max_length=32,
        description="file-name patterns such as ['*.log.[0-9]*', '*.gz']",
    )
    min_age_seconds: float = Field(default=86400, strict=True, ge=0, le=TEN_YEARS)
    recursive: StrictBool = True


class DiskSettings(AgentSettings):
    """See docs/agents/disk.md for each setting."""

    mounts: Annotated[list[AbsolutePath], distinct("lists a mount point twice")] = Field(
        min_length=1, max_length=64, description='mount points to watch, e.g. ["/var/log"]'
    )
    roots: list[Root] = Field(
        min_length=1,
        max_length=64,
        description="cleanup roots [{path, globs, min_age_seconds, recursive}]; "
        "only files under these folders are ever cleaned",
    )
    threshold_percent: float = Field(default=85.0, strict=True, ge=1, le=99)
    critical_percent: float = Field(default=95.0, strict=True, ge=1, le=100)
    target_percent: float | None = Field(default=None, strict=True, ge=0, le=99)
    mode: Mode = DELETE
    quarantine_dir: OwnFolder | None = None
    state_dir: OwnFolder = "/var/lib/aiops/disk"
    max_files: int = Field(default=1000, strict=True, ge=1, le=10_000)
    max_scan_entries: int = Field(default=200_000, strict=True, ge=1, le=10_000_000)
    throttle_seconds: float = Field(default=0.0, strict=True, ge=0, le=10)
    risk_level: RiskLevel | None = None
    verify_min_freed_ratio: float = Field(default=0.5, strict=True, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> DiskSettings:
        problems: list[tuple[Where, str]] = []
        if self.target_percent is not None and self.target_percent >= self.threshold_percent:
            problems.append(
                (
                    ("target_percent",),
                    f"{self.target_percent:g} must be below threshold_percent ({self.threshold_percent:g})",
                )
            )
        for i, root in enumerate(self.roots):
            if not any(inside(root.path, m) for m in self.mounts):
                problems.append(
                    (
                        ("roots", i, "path"),
                        f"{root.path!r} is on none of the watched mounts ({', '.join(self.mounts)}); "
                        "cleaning it would not relieve them",
                    )
                )
            for other in self.roots:
                if other.path != root.path and inside(root.path, other.path):
                    problems.append(
                        (("roots",), f"{root.path!r} is inside {other.path!r}; list each folder once")
                    )
        for name in ("quarantine_dir", "state_dir"):
            folder = getattr(self, name)
            for root in self.roots if folder is not None else ():
                if inside(folder, root.path) or inside(root.path, folder):
                    problems.append(
                        (
                            (name,),
                            f"{folder!r} overlaps the cleanup root {root.path!r}; "
                            "keep it outside every root (and no root inside it)",
                        )
                    )
        if self.mode == QUARANTINE and self.quarantine_dir is None:
            problems.append(
                (
                    ("quarantine_dir",),
                    "is required with mode quarantine: a folder on another filesystem "
                    "(moving files within the full filesystem would free nothing)",
                )
            )
        if problems:
            raise SettingProblems(problems)
        return self

    @property
    def risk(self) -> RiskLevel:
        """The risk of a cleanup: as configured, else by mode (a deletion cannot be undone)."""
        return self.risk_level or DEFAULT_RISK[self.mode]

    def mount_of(self, path: str) -> str | None:
        """The configured mount a path lies on (the deepest one containing it)."""
        holders = [m for m in self.mounts if inside(path, m)]
        return max(holders, key=len) if holders else None

    def roots_of(self, mount: str) -> list[Root]:
        return [r for r in self.roots if self.mount_of(r.path) == mount]


def path_problems(settings: DiskSettings) -> list[str]:
    """What this worker sees wrong with the configured paths (read-only: ``lstat`` and ``realpath``):
    a mount or root that does not exist, is not a directory, or is reached through a symlink."""
    problems = []
    named = [(f"settings.mounts[{i}]", m) for i, m in enumerate(settings.mounts)]
    named += [(f"settings.roots[{i}].path", r.path) for i, r in enumerate(settings.roots)]
    for where, path in named:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{where}: {path} does not exist on this worker")
            continue
        except OSError as err:
            problems.append(f"{where}: cannot look at {path}: {err.strerror}")
            continue
        real = os.path.realpath(path)
        if stat.S_ISLNK(st.st_mode) or real != path:
            problems.append(
                f"{where}: {path} is reached through a symlink (it is {real}); configure the real path"
            )
        elif not stat.S_ISDIR(st.st_mode):
            problems.append(f"{where}: {path} is not a directory")
    return problems
