"""Looking at the filesystem, read-only: how full a mount is and which files a cleanup would take.

The walk never follows a symlink (``os.fwalk`` works on directory descriptors, so even a symlink
swapped in mid-walk is not followed), never leaves the mount's filesystem, and never selects a
hard-linked file (removing one of its names frees nothing).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agents.builtin.disk.settings import DiskSettings, Root


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
        """The plan's line for this file; ``plan.planned_files`` reads it back at execution."""
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
        """Stable for one set of files to clean: it names one occurrence of the condition."""
        body = json.dumps([[c.path, c.inode, c.size, c.mtime_ns] for c in self.selected])
        return hashlib.sha256(f"{self.mount}\n{body}".encode()).hexdigest()[:16]

    def skip(self, note: str) -> None:
        if len(self.skipped) < 50:
            self.skipped.append(note)


def matches(root: Root, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in root.globs)


def scan(settings: DiskSettings, mount: str, now: float | None = None) -> Scan:
    """Walk the mount's roots for files to clean, oldest first, within the configured limits."""
    now = time.time() if now is None else now
    result = Scan(mount=mount, usage=usage(mount))
    device = os.stat(mount).st_dev
    found: list[Candidate] = []
    for root in settings.roots_of(mount):
        if _usable_root(root, device, mount, result):
            _walk(root, device, now, settings.max_scan_entries, result, found)
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


def _usable_root(root: Root, device: int, mount: str, result: Scan) -> bool:
    try:
        st = os.lstat(root.path)
    except FileNotFoundError:
        result.skip(f"root {root.path}: does not exist")
        return False
    if stat.S_ISLNK(st.st_mode):
        result.skip(f"root {root.path}: is a symlink (not followed)")
        return False
    real = os.path.realpath(root.path)
    if real != root.path:
        result.skip(f"root {root.path}: resolves through a symlink to {real} (not followed)")
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != device:
        result.skip(f"root {root.path}: not a directory on {mount}")
        return False
    return True


def _walk(root: Root, device: int, now: float, budget: int, result: Scan, found: list[Candidate]) -> None:
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
                result.skip(f"{path}: symlink (never followed)")
            elif est.st_dev != device:
                result.skip(f"{path}: on another filesystem (not entered)")
            elif stat.S_ISDIR(est.st_mode):
                if root.recursive:
                    keep.append(name)
            elif not stat.S_ISREG(est.st_mode) or not matches(root, name):
                continue
            elif now - est.st_mtime < root.min_age_seconds:
                continue
            elif est.st_nlink > 1:
                result.skip(f"{path}: has {est.st_nlink} hard links (removing one name frees nothing)")
            else:
                found.append(Candidate(path, est.st_size, est.st_blocks * 512, est.st_mtime_ns, est.st_ino))
        dirnames[:] = keep
