"""The ``disk`` agent's hooks: detect a filling mount, decide a cleanup, plan it, run it once."""

from __future__ import annotations

import asyncio
import os

from agents import ActionResult, ActionType, AgentAction, EventType, Plan, Severity, SystemEvent
from agents.base_agent import BaseAgent
from agents.builtin.common import slug
from agents.builtin.disk.execute import execute_files, restore, verify
from agents.builtin.disk.plan import check_planned, describe, planned_files
from agents.builtin.disk.scan import scan, usage
from agents.builtin.disk.settings import QUARANTINE, DiskSettings, path_problems
from agents.ledger import ActionLedger, ledger_key
from agents.registry import register_agent
from aiops.contracts.errors import NonRetryableActionError

ACTION_KIND = "disk_cleanup"


@register_agent("disk")
class DiskAgent(BaseAgent[DiskSettings]):
    """Watches filesystem usage and cleans configured roots (see the package docstring)."""

    pure_decisions = True  # deciding reads only the event and the settings

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.METRIC_THRESHOLD, EventType.ALERT]

    def _validate_settings_specific(self, settings: DiskSettings) -> list[str]:
        return path_problems(settings)

    @property
    def ledger(self) -> ActionLedger:
        return ActionLedger(self.settings.state_dir)

    # ----- detect and decide ------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        settings = self.settings
        events = []
        for mount in settings.mounts:
            try:
                now = usage(mount)
            except OSError as err:
                self.logger.warning("disk agent %s cannot stat %s: %s", self.agent_id, mount, err.strerror)
                continue
            if now.percent < settings.threshold_percent:
                continue
            found = await asyncio.to_thread(scan, settings, mount)
            severity = Severity.HIGH if found.usage.percent >= settings.critical_percent else Severity.MEDIUM
            events.append(
                SystemEvent(
                    # One occurrence: this mount over its threshold with this set of files to clean.
                    id=f"disk-{slug(mount, 'root')}-{found.digest()}",
                    type=EventType.METRIC_THRESHOLD,
                    source=f"{self.agent_id}:{mount}",
                    severity=severity,
                    data={
                        "kind": ACTION_KIND,
                        "mount": mount,
                        "used_percent": round(found.usage.percent, 2),
                        "used_bytes": found.usage.used,
                        "size_bytes": found.usage.size,
                        "threshold_percent": settings.threshold_percent,
                        "candidates": len(found.selected),
                        "candidate_bytes": found.selected_bytes,
                    },
                )
            )
        return events

    def _mount_of_event(self, event: SystemEvent) -> str | None:
        if event.type == EventType.ALERT:
            if event.data.get("status") == "resolved":
                return None
            labels = event.data.get("labels") or {}
            wanted = next((labels.get(k) for k in ("mountpoint", "mount", "path") if labels.get(k)), None)
        else:
            wanted = event.data.get("mount")
        if not isinstance(wanted, str):
            return None
        wanted = os.path.normpath(wanted) if wanted.startswith("/") else wanted
        return wanted if wanted in self.settings.mounts else None

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        settings = self.settings
        mount = self._mount_of_event(event)
        if mount is None:
            return None
        if event.type == EventType.METRIC_THRESHOLD and event.data.get("candidates") == 0:
            self.logger.warning("%s is over its threshold but nothing under the roots can be cleaned", mount)
            return None
        verb = settings.mode
        used = event.data.get("used_percent")
        return AgentAction(
            id="-",
            agent_id=self.agent_id,
            type=ActionType.CUSTOM,
            description=f"Free space on {mount}: {verb} old files under its cleanup roots",
            target_resources=[mount],
            risk_level=settings.risk,
            estimated_impact=(
                f"{verb}s rotated logs and temporary files matching the configured globs; "
                + ("restorable from quarantine" if verb == QUARANTINE else "deleted files are gone")
            ),
            parameters={
                "kind": ACTION_KIND,
                "mount": mount,
                "mode": settings.mode,
                "used_percent_at_detection": used
                if isinstance(used, int | float) and not isinstance(used, bool)
                else None,
            },
        )

    # ----- plan and execute ---------------------------------------------------------------------------

    def _check_action(self, action: AgentAction) -> str:
        settings = self.settings
        mount = action.parameters.get("mount")
        if action.parameters.get("kind") != ACTION_KIND or mount not in settings.mounts:
            raise NonRetryableActionError(f"not a disk cleanup of a watched mount: {mount!r}")
        if action.parameters.get("mode") != settings.mode:
            raise NonRetryableActionError(
                f"the action was decided for mode {action.parameters.get('mode')!r}, "
                f"the config says {settings.mode!r}"
            )
        return str(mount)

    async def _plan_specific(self, action: AgentAction) -> Plan:
        settings = self.settings
        mount = self._check_action(action)
        try:
            found = await asyncio.to_thread(scan, settings, mount)
        except OSError as err:
            raise NonRetryableActionError(f"cannot look at {mount}: {err.strerror}") from err
        if not found.selected:
            roots = ", ".join(r.path for r in settings.roots_of(mount)) or "no root"
            raise NonRetryableActionError(
                f"nothing to clean on {mount} ({found.usage.percent:.1f}% used): "
                f"{found.scanned} entries under {roots} scanned, none matches the globs and age; "
                "a person must look"
            )
        if settings.mode == QUARANTINE and await asyncio.to_thread(self._same_filesystem, mount):
            raise NonRetryableActionError(
                f"quarantine_dir {settings.quarantine_dir} is on the same filesystem as {mount}: moving "
                "files there frees nothing; put it on another filesystem or use mode delete"
            )
        return describe(found, settings)

    def _same_filesystem(self, mount: str) -> bool:
        """Whether the quarantine folder is on ``mount``'s filesystem (where a move frees nothing)."""
        folder = _existing_ancestor(self.settings.quarantine_dir or "/")
        return os.stat(folder).st_dev == os.stat(mount).st_dev

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        mount = self._check_action(action)
        async with self.ledger.entry(action) as entry:
            done = entry.done_result()
            if done is not None:  # a retry after the work was finished and recorded
                return done
            files = planned_files(action.parameters.get("approved_plan"))
            check_planned(files, mount, self.settings)
            return await asyncio.to_thread(execute_files, entry, files, mount, self.settings)

    # ----- verify, roll back, health ------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        mount = self._check_action(action)
        return await asyncio.to_thread(verify, self.ledger.lookup(action), mount, self.settings)

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        if action.parameters.get("mode") != QUARANTINE:
            return None  # deleted files cannot be brought back
        self._check_action(action)
        async with self.ledger.entry(f"{ledger_key(action)}#restore") as restores:
            return await asyncio.to_thread(restore, self.ledger.lookup(action), restores)

    async def _health_check_specific(self) -> dict[str, bool]:
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, bool]:
        settings = self.settings
        checks: dict[str, bool] = {}
        for mount in settings.mounts:
            try:
                usage(mount)
                checks[f"{mount} readable"] = True
            except OSError:
                checks[f"{mount} readable"] = False
        for root in settings.roots:
            checks[f"root {root.path} is a real directory"] = (
                os.path.isdir(root.path)
                and not os.path.islink(root.path)
                and os.path.realpath(root.path) == root.path
            )
        checks["state_dir writable"] = os.access(_existing_ancestor(settings.state_dir), os.W_OK)
        return checks


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path
