"""Executing, verifying and undoing a cleanup, with the action ledger as the record of what was done.

Before a file is touched, a ``intent`` step names it, so a retry (say after the worker died
mid-way) that finds it gone knows it was this action's doing; after, a ``done`` or ``skipped`` step
records the outcome and the retry moves on. A file recreated since under the same name (a new inode)
is never touched. These functions block: run them in a thread.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from agents.builtin.disk.fsops import remove_one, restore_one
from agents.builtin.disk.plan import PlannedFile, human
from agents.builtin.disk.scan import usage
from agents.builtin.disk.settings import QUARANTINE, DiskSettings
from agents.ledger import LedgerEntry
from aiops.contracts.models import ActionResult

log = logging.getLogger("aiops.agent.disk")


def execute_files(
    entry: LedgerEntry, files: list[PlannedFile], mount: str, settings: DiskSettings
) -> ActionResult:
    """Act on the planned files not yet handled by an earlier attempt; record and return the result."""
    if entry.intent is None:
        entry.intend({"mount": mount, "used_before": usage(mount).used, "files": len(files)})
    intent = entry.intent or {}
    steps = entry.steps
    handled = {s.data["path"] for s in steps if s.name in ("done", "skipped")}
    intended = {s.data["path"] for s in steps if s.name == "intent"}
    device = os.stat(mount).st_dev
    quarantine_root = None
    if settings.mode == QUARANTINE:
        assert settings.quarantine_dir is not None
        quarantine_root = os.path.join(settings.quarantine_dir, entry.name[:40])
    for index, f in enumerate(files):
        if f.path in handled:
            continue
        if index and settings.throttle_seconds:
            time.sleep(settings.throttle_seconds)
        if f.path not in intended:  # so that a retry knows a file gone missing was this action's doing
            entry.step("intent", {"path": f.path})
        outcome = remove_one(f, device, quarantine_root, f.path in intended)
        kind = outcome.pop("kind")
        entry.step(
            kind, {**outcome, "path": f.path, "inode": f.inode, "mtime_ns": f.mtime_ns, "size": f.size}
        )
    return entry.finish(
        _result(entry, len(files), mount, settings, int(intent["used_before"]), quarantine_root)
    )


def _result(
    entry: LedgerEntry,
    planned: int,
    mount: str,
    settings: DiskSettings,
    used_before: int,
    quarantine: str | None,
) -> ActionResult:
    steps = entry.steps
    removed = [s.data for s in steps if s.name == "done"]
    skipped = [s.data for s in steps if s.name == "skipped"]
    freed_bytes = sum(int(e["size"]) for e in removed)
    after = usage(mount)
    verb = "quarantined" if settings.mode == QUARANTINE else "deleted"
    return ActionResult(
        success=bool(removed),
        message=(
            f"{verb} {len(removed)} of {planned} planned file(s), {human(freed_bytes)}, on {mount}; "
            f"{len(skipped)} skipped; now {after.percent:.1f}% used"
            if removed
            else f"nothing done on {mount}: all {planned} planned file(s) changed since the plan"
        ),
        data={
            "mount": mount,
            "mode": settings.mode,
            "removed_files": len(removed),
            "removed_bytes": freed_bytes,
            "skipped": [f"{e['path']}: {e['reason']}" for e in skipped[:20]],
            "used_before": used_before,
            "used_after": after.used,
            "used_percent_after": round(after.percent, 2),
            "quarantine": quarantine,
        },
        error=None if removed else "every planned file changed since the plan; re-plan",
    )


def verify(entry: LedgerEntry, mount: str, settings: DiskSettings) -> bool:
    """The removed files are gone (their copies in quarantine), and the space came back."""
    result = entry.done_result()
    if result is None:
        log.warning("verify %s: execution left no record", entry.key)
        return False
    for step in entry.steps:
        if step.name == "done" and not _gone(entry.key, step.data):
            return False
    now = usage(mount)
    freed = int(result.data["used_before"]) - now.used
    wanted = settings.verify_min_freed_ratio * int(result.data["removed_bytes"])
    if freed >= wanted or now.percent < settings.threshold_percent:
        return True
    log.warning(
        "verify %s: %s freed %d bytes, expected at least %d (files still held open?)",
        entry.key,
        mount,
        freed,
        wanted,
    )
    return False


def _gone(key: str, done: dict[str, Any]) -> bool:
    try:
        st = os.lstat(done["path"])
        if st.st_ino == done["inode"] and st.st_mtime_ns == done["mtime_ns"]:
            log.warning("verify %s: %s is still there", key, done["path"])
            return False
    except FileNotFoundError:
        pass
    quarantined = done.get("quarantine_path")
    if quarantined and not os.path.isfile(quarantined):
        log.warning("verify %s: quarantined copy %s is missing", key, quarantined)
        return False
    return True


def restore(executed: LedgerEntry, restores: LedgerEntry) -> ActionResult:
    """Bring the quarantined files of ``executed`` back; ``restores`` records each one restored."""
    restored_before = {s.data["path"] for s in restores.steps if s.name == "restored"}
    restored, conflicts = 0, []
    for step in executed.steps:
        if step.name != "done" or step.data.get("op") != QUARANTINE:
            continue
        path, qpath = step.data["path"], step.data["quarantine_path"]
        if path in restored_before:
            restored += 1
            continue
        outcome = restore_one(path, qpath, int(step.data["size"]), int(step.data["mtime_ns"]))
        if outcome == "restored":
            restores.step("restored", {"path": path})
            restored += 1
        else:
            conflicts.append(f"{path}: {outcome}")
    return ActionResult(
        success=not conflicts,
        message=f"restored {restored} file(s) from quarantine"
        + (f"; {len(conflicts)} left in quarantine: {'; '.join(conflicts[:5])}" if conflicts else ""),
        data={"restored": restored, "conflicts": conflicts[:20]},
    )
