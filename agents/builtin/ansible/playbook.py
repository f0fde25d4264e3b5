"""Running one playbook through ansible-runner, and reading what it did or would do."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from agents.builtin.ansible.settings import AnsibleSettings
from agents.secret_file import secret_json_file
from aiops.contracts.errors import AgentError


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def render_diff(diff: Any) -> list[str]:
    """A module's ``diff`` result (a dict, a list of them, or ``prepared`` text) as unified diff lines."""
    items = diff if isinstance(diff, list) else [diff]
    lines: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "prepared" in item:
            lines += str(item["prepared"]).splitlines()
            continue
        if "before" not in item and "after" not in item:
            continue
        before, after = _as_text(item.get("before", "")), _as_text(item.get("after", ""))
        lines += [
            line.rstrip("\n")
            for line in difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=str(item.get("before_header", "before")),
                tofile=str(item.get("after_header", "after")),
            )
        ]
    return lines


class PlaybookRun:
    """What one ``ansible-playbook`` run did or (in check mode) would do."""

    def __init__(self, status: str, rc: int, events: list[dict[str, Any]], stdout_tail: str) -> None:
        self.status, self.rc, self.stdout_tail = status, rc, stdout_tail
        self.changed: list[str] = []  # "host: task"
        self.failed: list[str] = []
        diff_lines: list[str] = []
        for event in events:
            kind = event.get("event")
            data = event.get("event_data") or {}
            where = f"{data.get('host')}: {data.get('task')}"
            res = data.get("res") or {}
            if kind == "runner_on_ok" and res.get("changed"):
                self.changed.append(where)
                diff_lines += [f"=== {where}", *render_diff(res.get("diff"))]
            elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                self.failed.append(f"{where}: {str(res.get('msg', kind))[:500]}")
        self.diff = "\n".join(diff_lines)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and not self.failed

    @property
    def hosts(self) -> list[str]:
        """The hosts with a changed task."""
        return sorted({c.split(":", 1)[0] for c in self.changed})

    def error(self, what: str) -> str:
        detail = "; ".join(self.failed) or self.stdout_tail
        return f"ansible-playbook {what} {self.status} (rc {self.rc}): {detail}"


def installed() -> bool:
    """Whether ``ansible-playbook`` is next to the worker's Python or on its PATH."""
    beside = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    return bool(beside or shutil.which("ansible-playbook"))


def run_playbook(settings: AnsibleSettings, root: Path, playbook: str, check: bool) -> PlaybookRun:
    """Run ``playbook`` (``--check --diff`` when ``check``) in ansible-runner's folder ``root``.
    Blocking: call it in a thread."""
    if not installed():
        raise AgentError("ansible-playbook is not installed on this worker: pip install ansible-core")
    import ansible_runner  # lazily: heavy, and only needed where the agent runs

    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    binaries = Path(sys.executable).parent
    cmdline = "--check --diff" if check else "--diff"
    # Extra vars may hold resolved secrets: a 0600 file read by ``-e @file``, deleted after the
    # run, never the command line (visible to every local user) or runner's env/ files.
    with secret_json_file(root, "extravars-", ".json", dict(settings.extra_vars)) as vars_file:
        runner = ansible_runner.run(
            private_data_dir=str(root),
            ident=uuid.uuid4().hex,
            playbook=playbook,
            inventory=settings.inventory_or_local(),
            limit=settings.limit,
            tags=",".join(settings.tags) or None,
            skip_tags=",".join(settings.skip_tags) or None,
            cmdline=f"{cmdline} -e @{vars_file}",
            envvars={
                "PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}",
                "ANSIBLE_NOCOLOR": "1",
            },
            quiet=True,
            rotate_artifacts=20,
            timeout=settings.timeout_seconds,
        )
        stdout = runner.stdout.read() if runner.stdout is not None else ""
    return PlaybookRun(str(runner.status), int(runner.rc or 0), list(runner.events), stdout[-1500:])
