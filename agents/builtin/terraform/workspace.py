"""The root module as the agent drives it: init once, plan into a file, render it, apply it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.builtin.terraform.runner import TerraformRun, run_terraform
from agents.builtin.terraform.settings import TerraformSettings
from agents.reviewed_change import DryRun, text_digest
from agents.secret_file import secret_json_file
from aiops.contracts.errors import AgentError

NO_CHANGES = "No changes."
PLAN_LINE = re.compile(r"^(Plan: .*|No changes\..*|Changes to Outputs:)$", re.MULTILINE)
SYMBOLS = {
    ("create",): "+",
    ("delete",): "-",
    ("update",): "~",
    ("delete", "create"): "-/+",
    ("create", "delete"): "+/-",
    ("read",): "<=",
}


@dataclass(frozen=True)
class SavedPlan(DryRun):
    """A plan saved to a file, as the approver reads it (``text``)."""

    text: str = NO_CHANGES


class Workspace:
    """Terraform commands in ``settings.working_dir``; ``initialized`` remembers, for the worker's
    lifetime, the modules already ``init``-ed (shared by the agent across config versions)."""

    def __init__(self, settings: TerraformSettings, initialized: set[str]) -> None:
        self.settings = settings
        self.working_dir = Path(settings.working_dir)
        self.plan_dir = Path(settings.plans)
        self._initialized = initialized

    async def terraform(self, command: str, *args: str, **options: Any) -> TerraformRun:
        timeout = self.settings.command_timeout_seconds
        return await run_terraform(self.working_dir, command, *args, timeout=timeout, **options)

    def _lock_timeout(self) -> str:
        return f"{int(self.settings.lock_timeout_seconds)}s"

    async def ensure_init(self) -> None:
        if not self.settings.init or str(self.working_dir) in self._initialized:
            return
        run = await self.terraform("init", input=False)
        if run.retcode != 0:
            raise AgentError(run.error("init"))
        self._initialized.add(str(self.working_dir))

    async def plan(self, out: Path | None) -> TerraformRun:
        """``plan -detailed-exitcode``: 0 no changes, 2 changes (saved to ``out`` when given)."""
        await self.ensure_init()
        with contextlib.ExitStack() as stack:
            files = self.settings.var_file_paths()
            if self.settings.variables:  # may hold resolved secrets: a 0600 file, never -var
                files.append(
                    str(
                        stack.enter_context(
                            secret_json_file(self.plan_dir, "vars-", ".tfvars.json", self.settings.variables)
                        )
                    )
                )
            options: dict[str, Any] = {
                "input": False,
                "detailed_exitcode": ...,
                "lock_timeout": self._lock_timeout(),
            }
            if files:
                options["var_file"] = files
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                options["out"] = str(out)
            run = await self.terraform("plan", **options)
        if run.retcode not in (0, 2):
            raise AgentError(run.error("plan"))
        return run

    async def render(self, plan_file: Path) -> tuple[str, list[str]]:
        """The saved plan as an approver reads it, and one line per resource change."""
        shown = await self.terraform("show", str(plan_file))
        if shown.retcode != 0:
            raise AgentError(shown.error("show"))
        as_json = await self.terraform("show", str(plan_file), json=...)
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

    async def saved_plan(self, plan_file: Path) -> SavedPlan:
        """Plan into ``plan_file`` and describe it."""
        run = await self.plan(plan_file)
        if run.retcode == 0:
            return SavedPlan(changed=False, digest=text_digest(NO_CHANGES))
        text, changes = await self.render(plan_file)
        return SavedPlan(changed=True, digest=text_digest(text), changes=changes, text=text)

    async def renders_to(self, plan_file: Path, digest: str) -> bool:
        """Whether a plan file saved earlier still renders to ``digest`` (False if it cannot)."""
        if not await asyncio.to_thread(plan_file.exists):
            return False
        try:
            return text_digest((await self.render(plan_file))[0]) == digest
        except AgentError:
            return False

    async def apply(self, plan_file: Path) -> TerraformRun:
        """``apply PLANFILE``: Terraform itself refuses a saved plan whose state moved on."""
        return await self.terraform("apply", str(plan_file), input=False, lock_timeout=self._lock_timeout())


def summary_line(text: str) -> str:
    match = PLAN_LINE.search(text)
    return match.group(1) if match else "Terraform plan"


def apply_line(text: str) -> str:
    match = re.search(r"^Apply complete!.*$", text, re.MULTILINE)
    return match.group(0) if match else ""


def counts(text: str) -> dict[str, int]:
    match = re.search(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy", text)
    add, change, destroy = (int(g) for g in match.groups()) if match else (0, 0, 0)
    return {"add": add, "change": change, "destroy": destroy}
