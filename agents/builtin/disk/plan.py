"""The plan of a cleanup: the exact files, written so that execution can read them back and check.

The approver reads the plan and its digest pins what they approved, so execution acts on the files
the plan lists, nothing else: each line is re-read (a line the agent did not write refuses the
action) and re-checked against the configured roots and globs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from agents.builtin.common import absolute_path, inside
from agents.builtin.disk.scan import Scan, matches
from agents.builtin.disk.settings import QUARANTINE, DiskSettings
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import Plan

CHANGE_LINE = re.compile(
    r'^(delete|quarantine) ("(?:[^"\\]|\\.)*") \((\d+) bytes, modified [^)]*\) '
    r"\[inode (\d+), mtime_ns (\d+)\]$"
)


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


def check_planned(files: list[PlannedFile], mount: str, settings: DiskSettings) -> None:
    """Refuse (not retryable) a plan naming a file the current settings would never select."""
    roots = settings.roots_of(mount)
    for f in files:
        if f.op != settings.mode:
            raise NonRetryableActionError(
                f"the approved plan would {f.op} {f.path}, the mode is {settings.mode}"
            )
        try:
            absolute_path(f.path)
        except ValueError:
            raise NonRetryableActionError(
                f"the approved plan names a path not in normal form: {f.path!r}"
            ) from None
        root = next((r for r in roots if inside(f.path, r.path) and f.path != r.path), None)
        if root is None:
            raise NonRetryableActionError(
                f"the approved plan names {f.path}, outside the cleanup roots of {mount}"
            )
        if not root.recursive and os.path.dirname(f.path) != root.path:
            raise NonRetryableActionError(f"the approved plan names {f.path}, below the non-recursive root")
        if not matches(root, os.path.basename(f.path)):
            raise NonRetryableActionError(
                f"the approved plan names {f.path}, which matches none of the globs"
            )


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def describe(found: Scan, settings: DiskSettings) -> Plan:
    """The plan an approver reads: a summary, how the files were chosen, and one line per file."""
    mount, verb = found.mount, settings.mode
    roots = settings.roots_of(mount)
    summary = (
        f"{verb} {len(found.selected)} file(s), {human(found.selected_bytes)} on {mount} "
        f"({found.usage.percent:.1f}% used of {human(found.usage.size)}, threshold "
        f"{settings.threshold_percent:g}%; about {found.projected_percent:.1f}% after)"
    )
    target = f", target {settings.target_percent:g}%" if settings.target_percent is not None else ""
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
        f"(max_files {settings.max_files}{target})",
        "execution acts on exactly these files; a file that changed since this plan (another inode, "
        "size or time, now a symlink, or a folder on its path swapped) is skipped",
    ]
    if found.truncated:
        details.append(f"the walk stopped at max_scan_entries ({settings.max_scan_entries})")
    if found.skipped:
        details.append("not touched:")
        details += [f"  {note}" for note in found.skipped]
    return Plan(summary=summary, details="\n".join(details), changes=[c.line(verb) for c in found.selected])
