"""Acting on one file safely: never through a symlink, never on a file that changed since the plan.

Every directory from ``/`` down to the file is opened with ``O_NOFOLLOW``, so a folder swapped for a
symlink after the plan makes the file be skipped instead of followed. A file is acted on only if it
is still the one the plan named (same inode, size and modification time, one link, same device).
Copies (into quarantine and back) go through a temporary name and a hard link, so they never
overwrite a name and a crash leaves no half file under the real name.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from agents.builtin.disk.plan import PlannedFile
from agents.builtin.disk.settings import DELETE, QUARANTINE
from aiops.contracts.errors import NonRetryableActionError


def open_dir_nofollow(path: str, create_mode: int | None = None) -> int:
    """A descriptor of directory ``path``, opened from ``/`` one component at a time without
    following any symlink; raises OSError (ELOOP / ENOTDIR / ENOENT) if any component is not a
    real directory. With ``create_mode``, missing components are created (for trusted folders)."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    for part in path.strip("/").split("/"):
        if not part:
            continue
        try:
            if create_mode is not None:
                try:
                    os.mkdir(part, create_mode, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def copy_fd(src: int, parent: int, name: str, st: os.stat_result) -> None:
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


def remove_one(f: PlannedFile, device: int, quarantine_root: str | None, retried: bool) -> dict[str, Any]:
    """Delete (or quarantine under ``quarantine_root``) the planned file if it is still the one the
    plan named; what happened, as the ledger step records it (``kind`` done or skipped)."""
    folder, name = os.path.split(f.path)
    target = os.path.join(quarantine_root, f.path.lstrip("/")) if quarantine_root else None
    try:
        parent = open_dir_nofollow(folder)
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
                return _done(target)
            return {"kind": "skipped", "reason": "gone since the plan"}
        refused = _changed(f, st, device)
        if refused is not None:
            return {"kind": "skipped", "reason": refused}
        if target is None:
            os.unlink(name, dir_fd=parent)
        else:
            _quarantine(parent, name, st, target)
        return _done(target)
    finally:
        os.close(parent)


def _done(target: str | None) -> dict[str, Any]:
    if target is None:
        return {"kind": "done", "op": DELETE}
    return {"kind": "done", "op": QUARANTINE, "quarantine_path": target}


def _changed(f: PlannedFile, st: os.stat_result, device: int) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "now a symlink"
    if not stat.S_ISREG(st.st_mode):
        return "no longer a regular file"
    if (st.st_ino, st.st_size, st.st_mtime_ns) != (f.inode, f.size, f.mtime_ns) or st.st_dev != device:
        return "changed since the plan (another inode, size or time)"
    if st.st_nlink > 1:
        return "now has several hard links"
    return None


def _quarantine(parent: int, name: str, st: os.stat_result, target: str) -> None:
    qfolder, qname = os.path.split(target)
    qparent = open_dir_nofollow(qfolder, create_mode=0o700)
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
        try:
            if os.fstat(src).st_ino != st.st_ino:
                raise NonRetryableActionError(f"{name} was replaced while being quarantined")
            try:
                os.unlink(qname, dir_fd=qparent)  # a partial copy from a crashed attempt
            except FileNotFoundError:
                pass
            copy_fd(src, qparent, qname, st)
        finally:
            os.close(src)
        os.unlink(name, dir_fd=parent)
    finally:
        os.close(qparent)


def restore_one(path: str, qpath: str, size: int, mtime_ns: int) -> str:
    """Move a quarantined file back under its name: "restored", or why it stays in quarantine."""
    folder, name = os.path.split(path)
    try:
        parent = open_dir_nofollow(folder, create_mode=0o755)
    except OSError as err:
        return f"cannot reach its folder ({err.strerror}; a symlink on the path?)"
    try:
        try:
            present: os.stat_result | None = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            present = None
        try:
            qfd = os.open(qpath, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if present is not None and stat.S_ISREG(present.st_mode):
                return "restored"  # an earlier attempt restored it and removed the copy
            return "the quarantined copy is gone"
        try:
            if present is None:
                copy_fd(qfd, parent, name, os.fstat(qfd))
            elif not stat.S_ISREG(present.st_mode) or (present.st_size, present.st_mtime_ns) != (
                size,
                mtime_ns,
            ):
                return "a different file now has its name (kept in quarantine)"
        finally:
            os.close(qfd)
        os.unlink(qpath)
        return "restored"
    finally:
        os.close(parent)
