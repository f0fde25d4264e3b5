"""The ``ansible`` agent: a playbook in check/diff mode finds drift; the approved run fixes it.

It runs one playbook (``settings.playbook``) through PyPI ``ansible-runner`` and
``ansible-core``:

- **detect**: ``ansible-playbook --check --diff``; any task that would change is drift.
  The event id derives from the digest of the rendered diff, so the same drift is one event.
- **plan**: the same check run; the diff (per host and task) is the evidence, headed by its sha256.
- **execute**: checks again and refuses (non-retryable) unless the pending diff is exactly
  the approved one; then runs the playbook for real. Markers keyed by the action id make a
  retry after a crash return the first outcome instead of running the playbook again.
- **verify**: a second check run must show nothing left to change and no failure.
- **rollback**: runs ``settings.rollback_playbook`` when one is configured.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.base_agent import BaseAgent
from agents.builtin.common import digest, number_problems, read_json, risk_problems, same_path, write_json
from agents.registry import register_agent
from aiops.contracts.errors import AgentError, NonRetryableActionError
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

KNOWN_SETTINGS = {
    "playbook",
    "inventory",
    "extra_vars",
    "limit",
    "tags",
    "skip_tags",
    "private_data_dir",
    "rollback_playbook",
    "risk_level",
    "timeout_seconds",
    "max_diff_chars",
}
DEFAULTS: dict[str, Any] = {
    "inventory": None,  # None: localhost over the local connection, with the worker's Python
    "extra_vars": {},
    "limit": None,
    "tags": [],
    "skip_tags": [],
    "private_data_dir": None,  # None: <temp dir>/aiops-ansible/<agent id>
    "rollback_playbook": None,
    "risk_level": "medium",
    "timeout_seconds": 900,
    "max_diff_chars": 60000,
}
DIGEST_HEADER = re.compile(r"^# ansible check sha256:([0-9a-f]{64})", re.MULTILINE)


def validate_settings(config: AgentConfig) -> list[str]:
    s = config.settings
    problems: list[str] = []
    unknown = sorted(set(s) - KNOWN_SETTINGS)
    if unknown:
        problems.append(f"unknown setting(s) {unknown}; known: {sorted(KNOWN_SETTINGS)}")
    playbook = s.get("playbook")
    if playbook is None:
        problems.append("settings.playbook is required: the absolute path of the playbook to keep applied")
    for name in ("playbook", "rollback_playbook", "private_data_dir"):
        value = s.get(name)
        if value is not None and (not isinstance(value, str) or not os.path.isabs(value)):
            problems.append(f"settings.{name} must be an absolute path")
    inventory = s.get("inventory")
    if inventory is not None and not isinstance(inventory, str | dict):
        problems.append("settings.inventory must be a path, an inline INI inventory, or a YAML-style dict")
    extra_vars = s.get("extra_vars")
    if extra_vars is not None and not isinstance(extra_vars, dict):
        problems.append("settings.extra_vars must map variable names to values")
    if s.get("limit") is not None and not isinstance(s.get("limit"), str):
        problems.append("settings.limit must be a host pattern string")
    for name in ("tags", "skip_tags"):
        value = s.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
            problems.append(f"settings.{name} must be a list of tag names")
    problems += risk_problems(s)
    problems += number_problems(s, (("timeout_seconds", 1, 86400), ("max_diff_chars", 1000, 1_000_000)))
    return problems


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

    def error(self, what: str) -> str:
        detail = "; ".join(self.failed) or self.stdout_tail
        return f"ansible-playbook {what} {self.status} (rc {self.rc}): {detail}"


@register_agent("ansible")
class AnsibleAgent(BaseAgent):
    """Configuration drift by ``ansible-playbook --check --diff``; the approved run converges it."""

    # ----- settings ----------------------------------------------------------------------------

    def _setting(self, name: str) -> Any:
        return self.config.settings.get(name, DEFAULTS[name])

    @property
    def playbook(self) -> str:
        return str(self.config.settings["playbook"])

    @property
    def private_data_dir(self) -> Path:
        configured = self._setting("private_data_dir")
        if configured:
            return Path(str(configured))
        return Path(tempfile.gettempdir()) / "aiops-ansible" / self.agent_id

    def _marker(self, action_id: str, kind: str) -> Path:
        key = hashlib.sha256(action_id.encode()).hexdigest()[:32]
        return self.private_data_dir / "actions" / f"{key}.{kind}.json"

    # ----- running a playbook ----------------------------------------------------------------------

    def _run_sync(self, playbook: str, check: bool) -> PlaybookRun:
        import ansible_runner  # lazily: heavy, and only needed where the agent runs

        root = self.private_data_dir
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        binaries = Path(sys.executable).parent
        inventory = self._setting("inventory")
        if inventory is None:
            inventory = f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}"
        # Extra vars may hold resolved secrets: a 0600 file read by ``-e @file``, deleted after the
        # run, never the command line (visible to every local user) or runner's env/ files.
        cmdline = "--check --diff" if check else "--diff"
        vars_file = root / f"extravars-{uuid.uuid4().hex}.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(self._setting("extra_vars")), f)
        try:
            runner = ansible_runner.run(
                private_data_dir=str(root),
                ident=uuid.uuid4().hex,
                playbook=playbook,
                inventory=inventory,
                limit=self._setting("limit"),
                tags=",".join(self._setting("tags")) or None,
                skip_tags=",".join(self._setting("skip_tags")) or None,
                cmdline=f"{cmdline} -e @{vars_file}",
                envvars={
                    "PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}",
                    "ANSIBLE_NOCOLOR": "1",
                },
                quiet=True,
                rotate_artifacts=20,
                timeout=int(self._setting("timeout_seconds")),
            )
            stdout = runner.stdout.read() if runner.stdout is not None else ""
        finally:
            vars_file.unlink(missing_ok=True)
        return PlaybookRun(str(runner.status), int(runner.rc or 0), list(runner.events), stdout[-1500:])

    async def _run(self, playbook: str, check: bool) -> PlaybookRun:
        if shutil.which(
            "ansible-playbook", path=str(Path(sys.executable).parent)
        ) is None and not shutil.which("ansible-playbook"):
            raise AgentError("ansible-playbook is not installed on this worker: pip install ansible-core")
        return await asyncio.to_thread(self._run_sync, playbook, check)

    async def _check(self) -> dict[str, Any]:
        run = await self._run(self.playbook, check=True)
        if not run.ok:
            raise AgentError(run.error("--check"))
        return {"changed": run.changed, "diff": run.diff, "digest": digest(run.diff)}

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        found = await self._check()
        if not found["changed"]:
            return []
        hosts = sorted({c.split(":", 1)[0] for c in found["changed"]})
        return [
            SystemEvent(
                id=f"ansible-drift-{found['digest'][:32]}",
                type=EventType.INFRASTRUCTURE_DRIFT,
                source=f"ansible:{self.playbook}",
                severity=Severity.MEDIUM,
                data={
                    "detector": "ansible",
                    "playbook": self.playbook,
                    "diff_sha256": found["digest"],
                    "hosts": hosts,
                    "changed_tasks": found["changed"][:100],
                },
            )
        ]

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT, EventType.CONFIG_CHANGE]

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        named = event.data.get("playbook")
        if named is not None and not same_path(str(named), self.playbook):
            return None  # about another playbook; an event can never choose what this agent runs
        hosts = [str(h) for h in event.data.get("hosts") or []]
        return AgentAction(
            id=f"ansible-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.RUN_COMMAND,
            description=f"ansible-playbook {os.path.basename(self.playbook)} to converge the drift",
            target_resources=hosts or [self.playbook],
            risk_level=RiskLevel(self._setting("risk_level")),
            estimated_impact=f"{len(event.data.get('changed_tasks') or [])} task(s) would change"
            if event.data.get("changed_tasks")
            else "runs the playbook; the plan shows what changes",
            parameters={"playbook": self.playbook, "detected_sha256": event.data.get("diff_sha256")},
        )

    # ----- plan ------------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        found = await self._check()
        limit = int(self._setting("max_diff_chars"))
        diff = found["diff"] or "(nothing would change)"
        if len(diff) > limit:
            diff = diff[:limit] + f"\n... ({len(found['diff']) - limit} more characters)"
        hosts = sorted({c.split(":", 1)[0] for c in found["changed"]})
        return Plan(
            summary=(
                f"{len(found['changed'])} task(s) would change on {', '.join(hosts) or 'no host'} "
                f"({os.path.basename(self.playbook)}, diff sha256 {found['digest'][:12]})"
            ),
            details=f"# ansible check sha256:{found['digest']} of {self.playbook}\n{diff}",
            changes=found["changed"],
        )

    # ----- execute ---------------------------------------------------------------------------

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        approved = action.parameters.get("approved_plan")
        match = DIGEST_HEADER.search(str(approved.get("details", ""))) if isinstance(approved, dict) else None
        if match is None:
            raise NonRetryableActionError("no approved ansible check reached execute: refusing to run blind")
        approved_digest = match.group(1)
        applied_marker, applying_marker = (
            self._marker(action.id, "applied"),
            self._marker(action.id, "applying"),
        )
        recorded = read_json(applied_marker)
        if recorded is not None:  # a retry of a finished action: the same answer, no second run
            return ActionResult.model_validate(recorded["result"])

        current = await self._check()
        if current["digest"] != approved_digest:
            if not current["changed"] and applying_marker.exists():
                result = ActionResult(
                    success=True,
                    message="the approved run was applied by an earlier attempt; nothing left to change",
                    data={"diff_sha256": approved_digest, "recovered": True},
                )
                write_json(applied_marker, {"result": result.model_dump(mode="json")})
                return result
            raise NonRetryableActionError(
                f"the pending changes differ from the approved diff (approved sha256 {approved_digest[:12]}, "
                f"current {current['digest'][:12]}): refusing to run; the current diff needs its own review"
            )
        if not current["changed"]:
            result = ActionResult(
                success=True, message="nothing to change", data={"diff_sha256": approved_digest}
            )
            write_json(applied_marker, {"result": result.model_dump(mode="json")})
            return result

        write_json(
            applying_marker,
            {
                "action_id": action.id,
                "diff_sha256": approved_digest,
                "started_at": datetime.now(UTC).isoformat(),
            },
        )
        run = await self._run(self.playbook, check=False)
        if not run.ok:
            return ActionResult(
                success=False,
                message=f"ansible-playbook {os.path.basename(self.playbook)} failed",
                error=run.error("run"),
                data={"diff_sha256": approved_digest, "changed": run.changed},
            )
        result = ActionResult(
            success=True,
            message=f"{len(run.changed)} task(s) changed by {os.path.basename(self.playbook)}",
            data={"diff_sha256": approved_digest, "changed": run.changed},
        )
        write_json(applied_marker, {"result": result.model_dump(mode="json")})
        return result

    # ----- verify, rollback ------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        run = await self._run(self.playbook, check=True)
        return run.ok and not run.changed

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        playbook = self._setting("rollback_playbook")
        if not playbook:
            return None
        done = self._marker(action.id, "rolledback")
        recorded = read_json(done)
        if recorded is not None:
            return ActionResult.model_validate(recorded["result"])
        run = await self._run(str(playbook), check=False)
        result = ActionResult(
            success=run.ok,
            message=f"rollback playbook {Path(str(playbook)).name}: {len(run.changed)} task(s) changed",
            error=None if run.ok else run.error("rollback"),
            data={"changed": run.changed},
        )
        if run.ok:
            write_json(done, {"result": result.model_dump(mode="json")})
        return result

    # ----- health, config --------------------------------------------------------------------------

    async def _initialize_agent_specific(self) -> None:
        try:
            import ansible_runner  # noqa: F401
        except ImportError:
            raise AgentError(
                "the ansible agent needs ansible-runner: pip install ansible-runner ansible-core"
            ) from None

    async def _health_check_specific(self) -> dict[str, bool]:
        local = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
        return {
            "ansible-playbook installed": bool(local or shutil.which("ansible-playbook")),
            "playbook readable": os.access(self.playbook, os.R_OK),
        }

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return validate_settings(config)
