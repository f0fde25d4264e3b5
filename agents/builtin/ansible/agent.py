"""The ``ansible`` agent's hooks: a check run finds drift, the approved run converges it, once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from agents import ActionResult, ActionType, AgentAction, EventType, Plan, Severity, SystemEvent
from agents.base_agent import BaseAgent
from agents.builtin.ansible.playbook import PlaybookRun, installed, run_playbook
from agents.builtin.ansible.settings import AnsibleSettings, playbook_problems
from agents.ledger import ActionLedger, ledger_key
from agents.registry import register_agent
from agents.reviewed_change import DryRun, Reviewed, clip, execute_reviewed, text_digest
from aiops.contracts.errors import AgentError

REVIEWED = Reviewed(
    label="ansible check",
    digest_key="diff_sha256",
    blind="no approved ansible check reached execute: refusing to run blind",
    moved_on="the pending changes differ from the approved diff (approved sha256 {approved}, "
    "current {current}): refusing to run; the current diff needs its own review",
    recovered="the approved run was applied by an earlier attempt; nothing left to change",
    nothing="nothing to change",
)


@register_agent("ansible")
class AnsibleAgent(BaseAgent[AnsibleSettings]):
    """Configuration drift by ``ansible-playbook --check --diff``; the approved run converges it."""

    pure_decisions = True  # deciding reads only the event and the settings

    def _validate_settings_specific(self, settings: AnsibleSettings) -> list[str]:
        return playbook_problems(settings)

    @property
    def runner_dir(self) -> Path:
        return Path(self.settings.runner_dir(self.agent_id))

    @property
    def ledger(self) -> ActionLedger:
        return ActionLedger(self.runner_dir / "ledger")

    async def _run(self, playbook: str, check: bool) -> PlaybookRun:
        return await asyncio.to_thread(run_playbook, self.settings, self.runner_dir, playbook, check)

    async def _check(self) -> tuple[PlaybookRun, DryRun]:
        run = await self._run(self.settings.playbook, check=True)
        if not run.ok:
            raise AgentError(run.error("--check"))
        return run, DryRun(changed=bool(run.changed), digest=text_digest(run.diff), changes=run.changed)

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        run, found = await self._check()
        if not found.changed:
            return []
        playbook = self.settings.playbook
        return [
            SystemEvent(
                id=f"ansible-drift-{found.digest[:32]}",
                type=EventType.INFRASTRUCTURE_DRIFT,
                source=f"ansible:{playbook}",
                severity=Severity.MEDIUM,
                data={
                    "detector": "ansible",
                    "playbook": playbook,
                    "diff_sha256": found.digest,
                    "hosts": run.hosts,
                    "changed_tasks": run.changed[:100],
                },
            )
        ]

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT, EventType.CONFIG_CHANGE]

    def _about_this_playbook(self, event: SystemEvent) -> bool:
        """An event may name the playbook it is about; it can never choose what this agent runs."""
        named = event.data.get("playbook")
        return named is None or os.path.normpath(str(named)) == self.settings.playbook

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if not self._about_this_playbook(event):
            return None
        playbook = self.settings.playbook
        hosts = [str(h) for h in event.data.get("hosts") or []]
        changed: list[Any] = event.data.get("changed_tasks") or []
        return AgentAction(
            id=f"ansible-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.RUN_COMMAND,
            description=f"ansible-playbook {os.path.basename(playbook)} to converge the drift",
            target_resources=hosts or [playbook],
            risk_level=self.settings.risk_level,
            estimated_impact=f"{len(changed)} task(s) would change"
            if changed
            else "runs the playbook; the plan shows what changes",
            parameters={"playbook": playbook, "detected_sha256": event.data.get("diff_sha256")},
        )

    # ----- plan ------------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        run, found = await self._check()
        playbook = self.settings.playbook
        diff = clip(run.diff or "(nothing would change)", self.settings.max_diff_chars)
        return Plan(
            summary=(
                f"{len(run.changed)} task(s) would change on {', '.join(run.hosts) or 'no host'} "
                f"({os.path.basename(playbook)}, diff sha256 {found.digest[:12]})"
            ),
            details=f"{REVIEWED.header(found.digest, playbook)}\n{diff}",
            changes=run.changed,
        )

    # ----- execute ---------------------------------------------------------------------------

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        playbook = self.settings.playbook

        async def dry_run() -> DryRun:
            return (await self._check())[1]

        async def apply(approved: str, current: DryRun) -> ActionResult:
            run = await self._run(playbook, check=False)
            if not run.ok:
                return ActionResult(
                    success=False,
                    message=f"ansible-playbook {os.path.basename(playbook)} failed",
                    error=run.error("run"),
                    data={"diff_sha256": approved, "changed": run.changed},
                )
            return ActionResult(
                success=True,
                message=f"{len(run.changed)} task(s) changed by {os.path.basename(playbook)}",
                data={"diff_sha256": approved, "changed": run.changed},
            )

        return await execute_reviewed(self.ledger, action, REVIEWED, dry_run, apply)

    # ----- verify, rollback ------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        run = await self._run(self.settings.playbook, check=True)
        return run.ok and not run.changed

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        playbook = self.settings.rollback_playbook
        if playbook is None:
            return None
        async with self.ledger.entry(f"{ledger_key(action)}#rollback") as entry:
            if (done := entry.done_result()) is not None:
                return done
            entry.intend({"playbook": playbook})
            run = await self._run(playbook, check=False)
            result = ActionResult(
                success=run.ok,
                message=f"rollback playbook {os.path.basename(playbook)}: {len(run.changed)} task(s) changed",
                error=None if run.ok else run.error("rollback"),
                data={"changed": run.changed},
            )
            return entry.finish(result) if run.ok else result

    # ----- health ----------------------------------------------------------------------------------

    async def _initialize_agent_specific(self) -> None:
        try:
            import ansible_runner  # noqa: F401
        except ImportError:
            raise AgentError(
                "the ansible agent needs ansible-runner: pip install ansible-runner ansible-core"
            ) from None

    async def _health_check_specific(self) -> dict[str, bool]:
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, bool]:
        return {
            "ansible-playbook installed": installed(),
            "playbook readable": os.access(self.settings.playbook, os.R_OK),
        }
