"""The ``disk`` agent: a filesystem filling up, cleaned up within configured roots only.

It watches the usage of configured mount points. Past the threshold it proposes a cleanup of old
rotated logs and temporary files: files matching a root's globs and older than its minimum age,
found under the configured roots only. The plan is the exact list of files (path, bytes, time,
inode); execution acts on exactly those files and skips any that changed since the plan. It deletes
them, or in ``quarantine`` mode moves them to a quarantine directory on another filesystem, from
which rollback restores them. Verification checks that the files are gone and the space came back.

Safety, by construction rather than by convention:

- never outside a root: only files found by walking a root (or listed in the approved plan and
  re-checked to lie in a root and match its globs) are touched;
- never through a symlink: the walk does not follow symlinks, roots that are or resolve through a
  symlink are refused, and at execution every directory from ``/`` down to the file is opened with
  ``O_NOFOLLOW``, so a directory swapped for a symlink after the plan makes the file be skipped;
- never another filesystem (a bind mount inside a root is not entered) and never a hard-linked file
  (deleting one of its names frees nothing, and quarantining it would copy someone else's data);
- idempotent: ``action.id`` keys a journal in ``state_dir``; a retried execution (say after the
  worker died mid-way) skips the files the journal records as done, and a file recreated since
  under the same name (a new inode) is never touched.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

DELETE = "delete"
QUARANTINE = "quarantine"
MODES = (DELETE, QUARANTINE)
DEFAULT_RISK = {DELETE: RiskLevel.MEDIUM, QUARANTINE: RiskLevel.LOW}
ACTION_KIND = "disk_cleanup"
TEN_YEARS = 10 * 366 * 24 * 3600

# Directories that are never a cleanup root, and trees no root may be inside.
FORBIDDEN_ROOTS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
     "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/var/lib",
     "/var/cache", "/snap"}
)  # fmt: skip
FORBIDDEN_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                   "/sbin", "/sys", "/usr", "/var/lib")  # fmt: skip

SETTINGS = {
    "mounts": "mount points to watch (required)",
    "threshold_percent": "usage at or above which a cleanup is proposed (default 85)",
    "critical_percent": "usage at or above which the event is of high severity (default 95)",
    "target_percent": "stop selecting files once the projected usage is at or below this (default: all)",
    "roots": "cleanup roots: [{path, globs, min_age_seconds, recursive}] (required)",
    "mode": "delete or quarantine (default delete)",
    "quarantine_dir": "where quarantine mode moves files; required with mode quarantine",
    "state_dir": "where execution journals live (default /var/lib/aiops/disk)",
    "max_files": "at most this many files per plan (default 1000)",
    "max_scan_entries": "stop walking the roots after this many entries (default 200000)",
    "throttle_seconds": "pause between two files at execution (default 0)",
    "risk_level": "risk of the proposed action (default medium for delete, low for quarantine)",
    "verify_min_freed_ratio": "share of the removed bytes that must show as freed (default 0.5)",
}
ROOT_SETTINGS = ("path", "globs", "min_age_seconds", "recursive")

CHANGE_LINE = re.compile(
    r'^(delete|quarantine) ("(?:[^"\\]|\\.)*") \((\d+) bytes, modified [^)]*\) '
    r"\[inode (\d+), mtime_ns (\d+)\]$"
)


# ----- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Root:
    path: str
    globs: tuple[str, ...]
    min_age_seconds: float
    recursive: bool


@dataclass(frozen=True)
class DiskSettings:
    mounts: tuple[str, ...]
    roots: tuple[Root, ...]
    threshold_percent: float = 85.0
    critical_percent: float = 95.0
    target_percent: float | None = None
    mode: str = DELETE
    quarantine_dir: str | None = None
    state_dir: str = "/var/lib/aiops/disk"
    max_files: int = 1000
    max_scan_entries: int = 200_000
    throttle_seconds: float = 0.0
    risk_level: RiskLevel = RiskLevel.MEDIUM
    verify_min_freed_ratio: float = 0.5

    def mount_of(self, path: str) -> str | None:
        """The configured mount a path lies on (the deepest one containing it)."""
        holders = [m for m in self.mounts if _inside(path, m)]
        return max(holders, key=len) if holders else None

    def roots_of(self, mount: str) -> list[Root]:
        return [r for r in self.roots if self.mount_of(r.path) == mount]


def _inside(path: str, folder: str) -> bool:
    return path == folder or folder == "/" or path.startswith(folder.rstrip("/") + "/")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _path_problem(value: Any, where: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{where} must be a non-empty absolute path string"
    if "\0" in value or "\n" in value:
        return f"{where} must not contain NUL or newline characters"
    if len(value) > 1024:
        return f"{where} is longer than 1024 characters"
    if not value.startswith("/"):
        return f"{where}: {value!r} is not an absolute path (it must start with /)"
    if os.path.normpath(value) != value or "//" in value:
        return (
            f"{where}: {value!r} is not in normal form (no '..', '.', '//' or trailing '/'); "
            f"write {os.path.normpath(value)!r}"
        )
    return None


def _glob_problem(glob: Any, where: str) -> str | None:
    if not isinstance(glob, str) or not glob:
        return f"{where} must be a non-empty string"
    if "/" in glob or "\0" in glob:
        return f"{where}: {glob!r} must match file names only (no '/'); use the root's path for the folder"
    if len(glob) > 255:
        return f"{where} is longer than 255 characters"
    if "**" in glob:
        return f"{where}: {glob!r}: '**' is not supported; set recursive: true on the root instead"
    if glob.strip("*?.") == "":
        return (
            f"{where}: {glob!r} matches every file name; name what may be removed "
            "(for example '*.log.[0-9]*', '*.gz', 'upload-*.tmp')"
        )
    depth = 0
    for char in glob:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        return f"{where}: {glob!r} has an unclosed '['"
    return None


def parse_settings(raw: dict[str, Any]) -> tuple[DiskSettings | None, list[str]]:
    """The settings, or None and every problem found (``settings.<name>: what is wrong``)."""
    problems: list[str] = []
    for key in raw:
        if key not in SETTINGS:
            problems.append(
                f"settings.{key}: unknown setting for the disk agent (known: {', '.join(SETTINGS)})"
            )

    def number(name: str, default: float | None, low: float, high: float, integer: bool = False) -> Any:
        value = raw.get(name, default)
        if value is None:
            return None
        if not _is_number(value) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            problems.append(f"settings.{name} must be {kind} between {low:g} and {high:g}")
            return default
        if not low <= value <= high:
            problems.append(f"settings.{name} is {value}; it must be between {low:g} and {high:g}")
            return default
        return value

    threshold = number("threshold_percent", 85.0, 1, 99)
    critical = number("critical_percent", 95.0, 1, 100)
    target = number("target_percent", None, 0, 99)
    if threshold is not None and target is not None and target >= threshold:
        problems.append(f"settings.target_percent ({target}) must be below threshold_percent ({threshold})")
    max_files = number("max_files", 1000, 1, 10_000, integer=True)
    max_scan = number("max_scan_entries", 200_000, 1, 10_000_000, integer=True)
    throttle = number("throttle_seconds", 0.0, 0, 10)
    ratio = number("verify_min_freed_ratio", 0.5, 0, 1)

    mounts_raw = raw.get("mounts")
    mounts: list[str] = []
    if not isinstance(mounts_raw, list) or not mounts_raw:
        problems.append('settings.mounts is required: a list of mount points to watch, e.g. ["/var/log"]')
    else:
        if len(mounts_raw) > 64:
            problems.append("settings.mounts lists more than 64 mount points")
        for i, mount in enumerate(mounts_raw[:64]):
            problem = _path_problem(mount, f"settings.mounts[{i}]")
            if problem:
                problems.append(problem)
            else:
                mounts.append(mount)
        if len(set(mounts)) != len(mounts):
            problems.append("settings.mounts lists a mount point twice")

    mode = raw.get("mode", DELETE)
    if mode not in MODES:
        problems.append(f"settings.mode must be one of {', '.join(MODES)}")
        mode = DELETE

    roots: list[Root] = []
    roots_raw = raw.get("roots")
    if not isinstance(roots_raw, list) or not roots_raw:
        problems.append(
            "settings.roots is required: a list of {path, globs, min_age_seconds, recursive}; "
            "only files under these folders are ever cleaned"
        )
    else:
        if len(roots_raw) > 64:
            problems.append("settings.roots lists more than 64 roots")
        for i, item in enumerate(roots_raw[:64]):
            root = _parse_root(item, f"settings.roots[{i}]", mounts, problems)
            if root is not None:
                roots.append(root)
        paths = [r.path for r in roots]
        for a in paths:
            for b in paths:
                if a != b and _inside(b, a):
                    problems.append(f"settings.roots: {b!r} is inside {a!r}; list each folder once")

    special_dirs = {"quarantine_dir": raw.get("quarantine_dir"), "state_dir": raw.get("state_dir")}
    for name, value in special_dirs.items():
        if value is None:
            continue
        problem = _path_problem(value, f"settings.{name}")
        if problem:
            problems.append(problem)
            continue
        if value == "/" or any(
            _inside(value, tree) for tree in ("/proc", "/sys", "/dev", "/etc", "/usr", "/boot")
        ):
            problems.append(f"settings.{name}: {value!r} is a system directory; use a dedicated folder")
        for root in roots:
            if _inside(value, root.path) or _inside(root.path, value):
                problems.append(
                    f"settings.{name}: {value!r} overlaps the cleanup root {root.path!r}; "
                    "keep it outside every root (and no root inside it)"
                )
    if mode == QUARANTINE and special_dirs["quarantine_dir"] is None:
        problems.append(
            "settings.quarantine_dir is required with mode quarantine: a folder on another filesystem "
            "(moving files within the full filesystem would free nothing)"
        )

    risk_raw = raw.get("risk_level")
    risk = DEFAULT_RISK[mode]
    if risk_raw is not None:
        try:
            risk = RiskLevel(risk_raw)
        except ValueError:
            problems.append(f"settings.risk_level must be one of {', '.join(r.value for r in RiskLevel)}")
    if problems:
        return None, problems
    return (
        DiskSettings(
            mounts=tuple(mounts),
            roots=tuple(roots),
            threshold_percent=float(threshold),
            critical_percent=float(critical),
            target_percent=None if target is None else float(target),
            mode=mode,
            quarantine_dir=special_dirs["quarantine_dir"],
            state_dir=special_dirs["state_dir"] or DiskSettings.state_dir,
            max_files=int(max_files),
            max_scan_entries=int(max_scan),
            throttle_seconds=float(throttle),
            risk_level=risk,
            verify_min_freed_ratio=float(ratio),
        ),
        [],
    )


def _parse_root(item: Any, where: str, mounts: list[str], problems: list[str]) -> Root | None:
    if not isinstance(item, dict):
        problems.append(f"{where} must be an object {{path, globs, min_age_seconds, recursive}}")
        return None
    before = len(problems)
    for key in item:
        if key not in ROOT_SETTINGS:
            problems.append(f"{where}.{key}: unknown root setting (known: {', '.join(ROOT_SETTINGS)})")
    raw_path = item.get("path")
    problem = _path_problem(raw_path, f"{where}.path")
    path = str(raw_path)
    if problem:
        problems.append(problem)
    elif path in FORBIDDEN_ROOTS:
        problems.append(
            f"{where}.path: {path!r} may not be a cleanup root (it holds the system or everyone's data); "
            "name the folder that holds the files, e.g. /var/log/myapp"
        )
    elif any(_inside(path, tree) for tree in FORBIDDEN_TREES):
        problems.append(
            f"{where}.path: {path!r} lies in a system directory; the disk agent never cleans there"
        )
    elif mounts and not any(_inside(path, m) for m in mounts):
        problems.append(
            f"{where}.path: {path!r} is on none of the watched mounts ({', '.join(mounts)}); "
            "cleaning it would not relieve them"
        )
    globs = item.get("globs")
    if not isinstance(globs, list) or not globs:
        problems.append(f"{where}.globs is required: file-name patterns such as ['*.log.[0-9]*', '*.gz']")
        globs = []
    elif len(globs) > 32:
        problems.append(f"{where}.globs lists more than 32 patterns")
    for j, glob in enumerate(globs[:32]):
        problem = _glob_problem(glob, f"{where}.globs[{j}]")
        if problem:
            problems.append(problem)
    age = item.get("min_age_seconds", 86400)
    if not _is_number(age) or not 0 <= age <= TEN_YEARS:
        problems.append(f"{where}.min_age_seconds must be a number of seconds between 0 and {TEN_YEARS}")
    recursive = item.get("recursive", True)
    if not isinstance(recursive, bool):
        problems.append(f"{where}.recursive must be true or false")
    if len(problems) > before:
        return None
    return Root(path=path, globs=tuple(globs), min_age_seconds=float(age), recursive=recursive)


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


# ----- looking at the filesystem ---------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    used: int
    size: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.size if self.size else 0.0


def usage(path: str) -> Usage:
    """Used bytes and size as ``df`` counts them (blocks reserved for root are not available)."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return Usage(used=used, size=used + st.f_bavail * st.f_frsize)


@dataclass(frozen=True)
class Candidate:
    path: str
    size: int
    allocated: int
    mtime_ns: int
    inode: int

    def line(self, mode: str) -> str:
        when = datetime.fromtimestamp(self.mtime_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{mode} {json.dumps(self.path)} ({self.size} bytes, modified {when}) "
            f"[inode {self.inode}, mtime_ns {self.mtime_ns}]"
        )


@dataclass
class Scan:
    mount: str
    usage: Usage
    selected: list[Candidate] = field(default_factory=list)
    eligible: int = 0
    scanned: int = 0
    skipped: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def selected_bytes(self) -> int:
        return sum(c.size for c in self.selected)

    @property
    def projected_percent(self) -> float:
        freed = sum(c.allocated for c in self.selected)
        return 100.0 * max(self.usage.used - freed, 0) / self.usage.size if self.usage.size else 0.0

    def digest(self) -> str:
        body = json.dumps([[c.path, c.inode, c.size, c.mtime_ns] for c in self.selected])
        return hashlib.sha256(f"{self.mount}\n{body}".encode()).hexdigest()[:16]


def _matches(root: Root, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in root.globs)


def scan(settings: DiskSettings, mount: str, now: float | None = None) -> Scan:
    """Walk the mount's roots (never following symlinks, never leaving the filesystem) for files to clean."""
    now = time.time() if now is None else now
    result = Scan(mount=mount, usage=usage(mount))
    device = os.stat(mount).st_dev
    found: list[Candidate] = []
    budget = settings.max_scan_entries

    def skip(note: str) -> None:
        if len(result.skipped) < 50:
            result.skipped.append(note)

    for root in settings.roots_of(mount):
        try:
            st = os.lstat(root.path)
        except FileNotFoundError:
            skip(f"root {root.path}: does not exist")
            continue
        if stat.S_ISLNK(st.st_mode):
            skip(f"root {root.path}: is a symlink (not followed)")
            continue
        if os.path.realpath(root.path) != root.path:
            skip(
                f"root {root.path}: resolves through a symlink to {os.path.realpath(root.path)} "
                "(not followed)"
            )
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_dev != device:
            skip(f"root {root.path}: not a directory on {mount}")
            continue
        # os.fwalk walks by directory descriptors and never follows a symlink, even one swapped in mid-walk.
        for folder, dirnames, filenames, dirfd in os.fwalk(root.path, follow_symlinks=False):
            if result.truncated:
                dirnames.clear()
                break
            keep = []
            for name in sorted(dirnames) + sorted(filenames):
                if result.scanned >= budget:
                    result.truncated = True
                    break
                result.scanned += 1
                path = os.path.join(folder, name)
                try:
                    est = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(est.st_mode):
                    skip(f"{path}: symlink (never followed)")
                    continue
                if est.st_dev != device:
                    skip(f"{path}: on another filesystem (not entered)")
                    continue
                if stat.S_ISDIR(est.st_mode):
                    if root.recursive:
                        keep.append(name)
                    continue
                if not stat.S_ISREG(est.st_mode) or not _matches(root, name):
                    continue
                if now - est.st_mtime < root.min_age_seconds:
                    continue
                if est.st_nlink > 1:
                    skip(f"{path}: has {est.st_nlink} hard links (removing one name frees nothing)")
                    continue
                found.append(Candidate(path, est.st_size, est.st_blocks * 512, est.st_mtime_ns, est.st_ino))
            dirnames[:] = keep
    found.sort(key=lambda c: (c.mtime_ns, c.path))
    result.eligible = len(found)
    freed = 0
    for candidate in found:
        if len(result.selected) >= settings.max_files:
            break
        if settings.target_percent is not None and result.usage.size:
            if 100.0 * (result.usage.used - freed) / result.usage.size <= settings.target_percent:
                break
        result.selected.append(candidate)
        freed += candidate.allocated
    return result


# ----- acting on one file safely ------------------------------------------------------------------------


def _open_dir_nofollow(path: str) -> int:
    """A descriptor of directory ``path``, opened from ``/`` one component at a time without
    following any symlink; raises OSError (ELOOP / ENOTDIR / ENOENT) if any component is not a
    real directory."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    for part in path.strip("/").split("/"):
        if not part:
            continue
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _makedirs_nofollow(path: str, mode: int = 0o700) -> int:
    """Like ``_open_dir_nofollow``, creating missing components (for trusted folders and restores)."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    for part in path.strip("/").split("/"):
        if not part:
            continue
        try:
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _copy_fd(src: int, parent: int, name: str, st: os.stat_result) -> None:
    """Copy the open file ``src`` to ``name`` in directory ``parent`` (never over an existing name)."""
    temporary = f".{name}.aiops-partial"
    try:
        os.unlink(temporary, dir_fd=parent)
    except FileNotFoundError:
        pass
    out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
    try:
        os.lseek(src, 0, os.SEEK_SET)
        while chunk := os.read(src, 1 << 20):
            os.write(out, chunk)
        os.fsync(out)
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        try:
            os.fchown(out, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(out)
    try:
        os.link(temporary, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
    finally:
        os.unlink(temporary, dir_fd=parent)


# ----- execution journal (keyed by action id) -------------------------------------------------------------


def _key(action_id: str) -> str:
    return hashlib.sha256(action_id.encode()).hexdigest()[:40]


class Journal:
    """Append-only JSON lines per action: what was done to which file, survived across crashes."""

    def __init__(self, state_dir: str, action_id: str, suffix: str = "journal") -> None:
        self.path = Path(state_dir) / f"{_key(action_id)}.{suffix}"
        self.result_path = Path(state_dir) / f"{_key(action_id)}.result.json"
        self.action_id = action_id

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: its file is re-checked
                continue
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.path.open("a") as f:
            f.write("\n" + json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def result(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.result_path.read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def save_result(self, data: dict[str, Any]) -> None:
        self.result_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.result_path.with_suffix(".partial")
        with temporary.open("w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.result_path)


@dataclass(frozen=True)
class PlannedFile:
    op: str
    path: str
    size: int
    inode: int
    mtime_ns: int


def planned_files(plan: Any) -> list[PlannedFile]:
    """The files of an approved plan (as execute receives it in ``parameters["approved_plan"]``)."""
    if not isinstance(plan, dict) or not isinstance(plan.get("changes"), list):
        raise NonRetryableActionError("the action carries no approved plan; the disk agent never acts blind")
    files = []
    for change in plan["changes"]:
        match = CHANGE_LINE.match(str(change))
        if match is None:
            raise NonRetryableActionError(
                f"the approved plan has a line the disk agent did not write: {change!r}"
            )
        op, quoted, size, inode, mtime_ns = match.groups()
        files.append(PlannedFile(op, json.loads(quoted), int(size), int(inode), int(mtime_ns)))
    return files


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def _same_filesystem(settings: DiskSettings, mount: str) -> bool:
    """Whether the quarantine folder is on ``mount``'s filesystem (where a move frees nothing)."""
    assert settings.quarantine_dir is not None
    return os.stat(_existing_ancestor(settings.quarantine_dir)).st_dev == os.stat(mount).st_dev


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "root"


# ----- the agent -----------------------------------------------------------------------------------------


@register_agent("disk")
class DiskAgent(BaseAgent):
    """Watches filesystem usage and cleans configured roots (see the module docstring)."""

    @property
    def settings(self) -> DiskSettings:
        parsed, problems = parse_settings(self.config.settings)
        if parsed is None:
            raise NonRetryableActionError("; ".join(problems))
        return parsed

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.METRIC_THRESHOLD, EventType.ALERT]

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        parsed, problems = parse_settings(config.settings)
        return problems if parsed is None else path_problems(parsed)

    # ----- detect ---------------------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        settings = self.settings
        events = []
        for mount in settings.mounts:
            try:
                now = usage(mount)
            except OSError as err:
                self.logger.warning("disk agent %s cannot stat %s: %s", self.agent_id, mount, err.strerror)
                continue
            if now.percent < settings.threshold_percent:
                continue
            found = await asyncio.to_thread(scan, settings, mount)
            severity = Severity.HIGH if found.usage.percent >= settings.critical_percent else Severity.MEDIUM
            events.append(
                SystemEvent(
                    # One occurrence: this mount over its threshold with this set of files to clean.
                    id=f"disk-{_slug(mount)}-{found.digest()}",
                    type=EventType.METRIC_THRESHOLD,
                    source=f"{self.agent_id}:{mount}",
                    severity=severity,
                    data={
                        "kind": ACTION_KIND,
                        "mount": mount,
                        "used_percent": round(found.usage.percent, 2),
                        "used_bytes": found.usage.used,
                        "size_bytes": found.usage.size,
                        "threshold_percent": settings.threshold_percent,
                        "candidates": len(found.selected),
                        "candidate_bytes": found.selected_bytes,
                    },
                )
            )
        return events

    # ----- decide ---------------------------------------------------------------------------------------

    def _mount_of_event(self, event: SystemEvent, settings: DiskSettings) -> str | None:
        if event.type == EventType.ALERT:
            if event.data.get("status") == "resolved":
                return None
            labels = event.data.get("labels") or {}
            wanted = next((labels.get(k) for k in ("mountpoint", "mount", "path") if labels.get(k)), None)
        else:
            wanted = event.data.get("mount")
        if not isinstance(wanted, str):
            return None
        wanted = os.path.normpath(wanted) if wanted.startswith("/") else wanted
        return wanted if wanted in settings.mounts else None

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        settings = self.settings
        mount = self._mount_of_event(event, settings)
        if mount is None:
            return None
        if event.type == EventType.METRIC_THRESHOLD and event.data.get("candidates") == 0:
            self.logger.warning("%s is over its threshold but nothing under the roots can be cleaned", mount)
            return None
        verb = "quarantine" if settings.mode == QUARANTINE else "delete"
        used = event.data.get("used_percent")
        return AgentAction(
            id="-",
            agent_id=self.agent_id,
            type=ActionType.CUSTOM,
            description=f"Free space on {mount}: {verb} old files under its cleanup roots",
            target_resources=[mount],
            risk_level=settings.risk_level,
            estimated_impact=(
                f"{verb}s rotated logs and temporary files matching the configured globs; "
                + ("restorable from quarantine" if settings.mode == QUARANTINE else "deleted files are gone")
            ),
            parameters={
                "kind": ACTION_KIND,
                "mount": mount,
                "mode": settings.mode,
                "used_percent_at_detection": used if _is_number(used) else None,
            },
        )

    # ----- plan -----------------------------------------------------------------------------------------

    def _check_action(self, action: AgentAction, settings: DiskSettings) -> str:
        mount = action.parameters.get("mount")
        if action.parameters.get("kind") != ACTION_KIND or mount not in settings.mounts:
            raise NonRetryableActionError(f"not a disk cleanup of a watched mount: {mount!r}")
        if action.parameters.get("mode") != settings.mode:
            raise NonRetryableActionError(
                f"the action was decided for mode {action.parameters.get('mode')!r}, "
                f"the config says {settings.mode!r}"
            )
        return str(mount)

    async def _plan_specific(self, action: AgentAction) -> Plan:
        settings = self.settings
        mount = self._check_action(action, settings)
        try:
            found = await asyncio.to_thread(scan, settings, mount)
        except OSError as err:
            raise NonRetryableActionError(f"cannot look at {mount}: {err.strerror}") from err
        roots = settings.roots_of(mount)
        if not found.selected:
            raise NonRetryableActionError(
                f"nothing to clean on {mount} ({found.usage.percent:.1f}% used): "
                f"{found.scanned} entries under "
                f"{', '.join(r.path for r in roots) or 'no root'} scanned, none matches the globs and age; "
                "a person must look"
            )
        if settings.mode == QUARANTINE and await asyncio.to_thread(_same_filesystem, settings, mount):
            raise NonRetryableActionError(
                f"quarantine_dir {settings.quarantine_dir} is on the same filesystem as {mount}: moving "
                "files there frees nothing; put it on another filesystem or use mode delete"
            )
        verb = "quarantine" if settings.mode == QUARANTINE else "delete"
        summary = (
            f"{verb} {len(found.selected)} file(s), {_human(found.selected_bytes)} on {mount} "
            f"({found.usage.percent:.1f}% used of {_human(found.usage.size)}, threshold "
            f"{settings.threshold_percent:g}%; about {found.projected_percent:.1f}% after)"
        )
        details = [
            f"mode: {settings.mode}"
            + (
                f" (files move to {settings.quarantine_dir}; rollback restores them)"
                if verb == QUARANTINE
                else ""
            ),
            "roots: "
            + "; ".join(
                f"{r.path} globs {list(r.globs)} older than {r.min_age_seconds:g}s"
                + (" recursive" if r.recursive else "")
                for r in roots
            ),
            f"scanned {found.scanned} entries; {found.eligible} eligible, {len(found.selected)} selected "
            f"(max_files {settings.max_files}"
            + (f", target {settings.target_percent:g}%" if settings.target_percent is not None else "")
            + ")",
            "execution acts on exactly these files; a file that changed since this plan (another inode, "
            "size or time, now a symlink, or a folder on its path swapped) is skipped",
        ]
        if found.truncated:
            details.append(f"the walk stopped at max_scan_entries ({settings.max_scan_entries})")
        if found.skipped:
            details.append("not touched:")
            details += [f"  {note}" for note in found.skipped]
        return Plan(
            summary=summary, details="\n".join(details), changes=[c.line(verb) for c in found.selected]
        )

    # ----- execute --------------------------------------------------------------------------------------

    def _validate_planned(self, files: list[PlannedFile], mount: str, settings: DiskSettings) -> None:
        roots = settings.roots_of(mount)
        for f in files:
            if f.op != settings.mode:
                raise NonRetryableActionError(
                    f"the approved plan would {f.op} {f.path}, the mode is {settings.mode}"
                )
            if _path_problem(f.path, "path") is not None:
                raise NonRetryableActionError(
                    f"the approved plan names a path not in normal form: {f.path!r}"
                )
            root = next((r for r in roots if _inside(f.path, r.path) and f.path != r.path), None)
            if root is None:
                raise NonRetryableActionError(
                    f"the approved plan names {f.path}, outside the cleanup roots of {mount}"
                )
            if not root.recursive and os.path.dirname(f.path) != root.path:
                raise NonRetryableActionError(
                    f"the approved plan names {f.path}, below the non-recursive root"
                )
            if not _matches(root, os.path.basename(f.path)):
                raise NonRetryableActionError(
                    f"the approved plan names {f.path}, which matches none of the globs"
                )

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        settings = self.settings
        mount = self._check_action(action, settings)
        journal = Journal(settings.state_dir, action.id)
        done = journal.result()
        if done is not None:  # a retry after the work was finished and recorded
            return ActionResult.model_validate(done["result"])
        files = planned_files(action.parameters.get("approved_plan"))
        self._validate_planned(files, mount, settings)
        return await asyncio.to_thread(self._execute_files, action, files, mount, settings, journal)

    def _execute_files(
        self,
        action: AgentAction,
        files: list[PlannedFile],
        mount: str,
        settings: DiskSettings,
        journal: Journal,
    ) -> ActionResult:
        entries = journal.entries()
        start = next((e for e in entries if e.get("kind") == "start"), None)
        if start is None:
            start = {
                "kind": "start",
                "action_id": action.id,
                "used_before": usage(mount).used,
                "at": time.time(),
            }
            journal.append(start)
        handled = {e["path"] for e in entries if e.get("kind") in ("done", "skipped")}
        intended = {e["path"] for e in entries if e.get("kind") == "intent"}
        device = os.stat(mount).st_dev
        quarantine_root = None
        if settings.mode == QUARANTINE:
            assert settings.quarantine_dir is not None
            quarantine_root = os.path.join(settings.quarantine_dir, _key(action.id))
        for index, f in enumerate(files):
            if f.path in handled:
                continue
            if index and settings.throttle_seconds:
                time.sleep(settings.throttle_seconds)
            if f.path not in intended:  # so that a retry knows a file gone missing was this action's doing
                journal.append({"kind": "intent", "path": f.path})
            outcome = self._one_file(f, device, quarantine_root, f.path in intended)
            journal.append(
                {**outcome, "path": f.path, "inode": f.inode, "mtime_ns": f.mtime_ns, "size": f.size}
            )
        entries = journal.entries()
        removed = [e for e in entries if e.get("kind") == "done"]
        skipped = [e for e in entries if e.get("kind") == "skipped"]
        freed_bytes = sum(int(e["size"]) for e in removed)
        after = usage(mount)
        verb = "quarantined" if settings.mode == QUARANTINE else "deleted"
        result = ActionResult(
            success=bool(removed),
            message=(
                f"{verb} {len(removed)} of {len(files)} planned file(s), {_human(freed_bytes)}, on {mount}; "
                f"{len(skipped)} skipped; now {after.percent:.1f}% used"
                if removed
                else f"nothing done on {mount}: all {len(files)} planned file(s) changed since the plan"
            ),
            data={
                "mount": mount,
                "mode": settings.mode,
                "removed_files": len(removed),
                "removed_bytes": freed_bytes,
                "skipped": [f"{e['path']}: {e['reason']}" for e in skipped[:20]],
                "used_before": int(start["used_before"]),
                "used_after": after.used,
                "used_percent_after": round(after.percent, 2),
                "quarantine": quarantine_root,
            },
            error=None if removed else "every planned file changed since the plan; re-plan",
        )
        journal.save_result({"action_id": action.id, "result": result.model_dump(mode="json")})
        return result

    def _one_file(
        self, f: PlannedFile, device: int, quarantine_root: str | None, retried: bool
    ) -> dict[str, Any]:
        folder, name = os.path.split(f.path)
        target = os.path.join(quarantine_root, f.path.lstrip("/")) if quarantine_root else None
        try:
            parent = _open_dir_nofollow(folder)
        except OSError as err:
            reason = (
                "a folder on its path is now a symlink"
                if err.errno in (errno.ELOOP, errno.ENOTDIR)
                else err.strerror
            )
            return {"kind": "skipped", "reason": f"parent folder changed ({reason})"}
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                if retried and (target is None or os.path.isfile(target)):
                    # An earlier attempt removed it and died before writing that down.
                    done = {"kind": "done", "op": QUARANTINE if target else DELETE}
                    return {**done, "quarantine_path": target} if target else done
                return {"kind": "skipped", "reason": "gone since the plan"}
            if stat.S_ISLNK(st.st_mode):
                return {"kind": "skipped", "reason": "now a symlink"}
            if not stat.S_ISREG(st.st_mode):
                return {"kind": "skipped", "reason": "no longer a regular file"}
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (
                f.inode,
                f.size,
                f.mtime_ns,
            ) or st.st_dev != device:
                return {"kind": "skipped", "reason": "changed since the plan (another inode, size or time)"}
            if st.st_nlink > 1:
                return {"kind": "skipped", "reason": "now has several hard links"}
            if target is None:
                os.unlink(name, dir_fd=parent)
                return {"kind": "done", "op": DELETE}
            self._quarantine(parent, name, st, target)
            return {"kind": "done", "op": QUARANTINE, "quarantine_path": target}
        finally:
            os.close(parent)

    @staticmethod
    def _quarantine(parent: int, name: str, st: os.stat_result, target: str) -> None:
        qfolder, qname = os.path.split(target)
        qparent = _makedirs_nofollow(qfolder)
        try:
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
            try:
                if os.fstat(src).st_ino != st.st_ino:
                    raise NonRetryableActionError(f"{name} was replaced while being quarantined")
                try:
                    os.unlink(qname, dir_fd=qparent)  # a partial copy from a crashed attempt
                except FileNotFoundError:
                    pass
                _copy_fd(src, qparent, qname, st)
            finally:
                os.close(src)
            os.unlink(name, dir_fd=parent)
        finally:
            os.close(qparent)

    # ----- verify and roll back ---------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        settings = self.settings
        mount = self._check_action(action, settings)
        return await asyncio.to_thread(self._verify, action, mount, settings)

    def _verify(self, action: AgentAction, mount: str, settings: DiskSettings) -> bool:
        journal = Journal(settings.state_dir, action.id)
        record = journal.result()
        if record is None:
            self.logger.warning("verify %s: execution left no record", action.id)
            return False
        for entry in journal.entries():
            if entry.get("kind") != "done":
                continue
            try:
                st = os.lstat(entry["path"])
                if st.st_ino == entry["inode"] and st.st_mtime_ns == entry["mtime_ns"]:
                    self.logger.warning("verify %s: %s is still there", action.id, entry["path"])
                    return False
            except FileNotFoundError:
                pass
            quarantined = entry.get("quarantine_path")
            if quarantined and not os.path.isfile(quarantined):
                self.logger.warning("verify %s: quarantined copy %s is missing", action.id, quarantined)
                return False
        data = record["result"]["data"]
        now = usage(mount)
        freed = int(data["used_before"]) - now.used
        wanted = settings.verify_min_freed_ratio * int(data["removed_bytes"])
        if freed >= wanted or now.percent < settings.threshold_percent:
            return True
        self.logger.warning(
            "verify %s: %s freed %d bytes, expected at least %d (files still held open?)",
            action.id,
            mount,
            freed,
            wanted,
        )
        return False

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        settings = self.settings
        if action.parameters.get("mode") != QUARANTINE:
            return None  # deleted files cannot be brought back
        self._check_action(action, settings)
        return await asyncio.to_thread(self._restore, action, settings)

    def _restore(self, action: AgentAction, settings: DiskSettings) -> ActionResult:
        journal = Journal(settings.state_dir, action.id)
        restores = Journal(settings.state_dir, action.id, suffix="restore")
        restored_before = {e["path"] for e in restores.entries() if e.get("kind") == "restored"}
        restored, conflicts = 0, []
        for entry in journal.entries():
            if entry.get("kind") != "done" or entry.get("op") != QUARANTINE:
                continue
            path, qpath = entry["path"], entry["quarantine_path"]
            if path in restored_before:
                restored += 1
                continue
            outcome = self._restore_one(path, qpath, int(entry["size"]), int(entry["mtime_ns"]))
            if outcome == "restored":
                restores.append({"kind": "restored", "path": path})
                restored += 1
            else:
                conflicts.append(f"{path}: {outcome}")
        return ActionResult(
            success=not conflicts,
            message=f"restored {restored} file(s) from quarantine"
            + (f"; {len(conflicts)} left in quarantine: {'; '.join(conflicts[:5])}" if conflicts else ""),
            data={"restored": restored, "conflicts": conflicts[:20]},
        )

    @staticmethod
    def _restore_one(path: str, qpath: str, size: int, mtime_ns: int) -> str:
        folder, name = os.path.split(path)
        try:
            parent = _makedirs_nofollow(folder, 0o755)
        except OSError as err:
            return f"cannot reach its folder ({err.strerror}; a symlink on the path?)"
        try:
            try:
                present = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                present = None
            try:
                qfd = os.open(qpath, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                if present is not None and stat.S_ISREG(present.st_mode):
                    return "restored"  # an earlier attempt restored it and removed the copy
                return "the quarantined copy is gone"
            try:
                qst = os.fstat(qfd)
                if present is not None:
                    same = stat.S_ISREG(present.st_mode) and (present.st_size, present.st_mtime_ns) == (
                        size,
                        mtime_ns,
                    )
                    if not same:
                        return "a different file now has its name (kept in quarantine)"
                else:
                    _copy_fd(qfd, parent, name, qst)
            finally:
                os.close(qfd)
            os.unlink(qpath)
            return "restored"
        finally:
            os.close(parent)

    # ----- health ---------------------------------------------------------------------------------------

    async def _health_check_specific(self) -> dict[str, bool]:
        return await asyncio.to_thread(self._health, self.settings)

    @staticmethod
    def _health(settings: DiskSettings) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        for mount in settings.mounts:
            try:
                usage(mount)
                checks[f"{mount} readable"] = True
            except OSError:
                checks[f"{mount} readable"] = False
        for root in settings.roots:
            checks[f"root {root.path} is a real directory"] = (
                os.path.isdir(root.path)
                and not os.path.islink(root.path)
                and os.path.realpath(root.path) == root.path
            )
        checks["state_dir writable"] = os.access(_existing_ancestor(settings.state_dir), os.W_OK)
        return checks
