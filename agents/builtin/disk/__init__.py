"""The ``disk`` agent: a filesystem filling up, cleaned up within configured roots only.

It watches the usage of configured mount points. Past the threshold it proposes a cleanup of old
rotated logs and temporary files: files matching a root's globs and older than its minimum age,
found under the configured roots only. The plan is the exact list of files (path, bytes, time,
inode); execution acts on exactly those files and skips any that changed since the plan. It deletes
them, or in ``quarantine`` mode moves them to a quarantine directory on another filesystem, from
which rollback restores them. Verification checks that the files are gone and the space came back.

Safety, by construction rather than by convention:

- never outside a root: only files found by walking a root (or listed in the approved plan and
  re-checked to lie in a root and match its globs) are touched (``settings``, ``plan``);
- never through a symlink: the walk does not follow symlinks, roots that are or resolve through a
  symlink are refused, and at execution every directory from ``/`` down to the file is opened with
  ``O_NOFOLLOW``, so a directory swapped for a symlink after the plan makes the file be skipped
  (``scan``, ``fsops``);
- never another filesystem (a bind mount inside a root is not entered) and never a hard-linked file
  (deleting one of its names frees nothing, and quarantining it would copy someone else's data);
- effectively once: the action ledger in ``state_dir`` records each file done under ``action.id``;
  a retried execution (say after the worker died mid-way) skips those, and a file recreated since
  under the same name (a new inode) is never touched (``execute``).

Modules: ``settings`` (what may be configured), ``scan`` (read-only look at the disk), ``plan``
(the approved list of files), ``fsops`` (acting on one file), ``execute`` (the ledgered run,
verification, restore) and ``agent`` (the hooks).
"""

from agents.builtin.disk.agent import DiskAgent
from agents.builtin.disk.plan import PlannedFile, planned_files
from agents.builtin.disk.scan import usage
from agents.builtin.disk.settings import DiskSettings, Root

__all__ = ["DiskAgent", "DiskSettings", "PlannedFile", "Root", "planned_files", "usage"]
