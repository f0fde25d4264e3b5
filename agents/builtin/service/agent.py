"""The ``service`` agent's hooks: detect a dead or unhealthy program, decide and plan a bounded
restart, run it once through the ledger, and verify the program answers again."""

from __future__ import annotations

import asyncio
import hashlib
import xmlrpc.client
from pathlib import Path
from typing import Any

from agents import ActionResult, ActionType, AgentAction, EventType, Plan, Severity, SystemEvent
from agents.base_agent import BaseAgent
from agents.builtin.common import slug
from agents.builtin.service.history import RestartHistory
from agents.builtin.service.restart import healthy_within, restart_once
from agents.builtin.service.settings import Service, ServiceSettings
from agents.builtin.service.supervisor import DOWN_STATES, Supervisor, SupervisorError, check_http, describe
from agents.ledger import ActionLedger
from agents.registry import register_agent
from aiops.contracts.errors import NonRetryableActionError

ACTION_KIND = "service_restart"
WHAT = {"down": "is down", "unhealthy": "fails its health check", "alert": "is alerting"}


@register_agent("service")
class ServiceAgent(BaseAgent[ServiceSettings]):
    """Watches supervisor programs and restarts them, boundedly (see the package docstring)."""

    pure_decisions = True  # deciding reads only the event and the settings

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.HEALTH_CHECK, EventType.ALERT]

    @property
    def _folder(self) -> Path:
        return Path(self.settings.state_dir) / self.agent_id

    @property
    def ledger(self) -> ActionLedger:
        """Where executions record their intent and result (``state_dir/<agent id>/actions``)."""
        return ActionLedger(self._folder / "actions")

    @property
    def history(self) -> RestartHistory:
        return RestartHistory(self._folder, self.settings.restart_window_seconds)

    # ----- detect ---------------------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        return await asyncio.to_thread(self._detect)

    def _detect(self) -> list[SystemEvent]:
        supervisor = Supervisor(self.settings.supervisor)
        events = []
        for service in self.settings.services:
            try:
                info = supervisor.info(service.name)
            except NonRetryableActionError as err:
                self.logger.warning("service agent %s: %s", self.agent_id, err)
                continue
            event = self._event(service, info)
            if event is not None:
                events.append(event)
        return events

    def _event(self, service: Service, info: dict[str, Any]) -> SystemEvent | None:
        state = str(info["statename"])
        health = None
        if state in DOWN_STATES or (state == "STOPPED" and self.settings.restart_stopped):
            kind = "down"
            # One occurrence: this program down since this stop, after the last restart this agent
            # made (supervisord's times are in whole seconds: two deaths in one second look alike).
            last = self.history.last_restart(service.name)
            occurrence = f"{service.name}|down|{state}|{info.get('start')}|{info.get('stop')}|{last}"
        elif state == "RUNNING" and service.health_url:
            if int(info["now"]) - int(info["start"]) < service.grace_seconds:
                return None
            health = check_http(service)
            if health.ok:
                return None
            kind = "unhealthy"
            # One occurrence: this incarnation (pid and start time) failing its check.
            occurrence = f"{service.name}|unhealthy|{info.get('pid')}|{info.get('start')}"
        else:
            return None
        digest = hashlib.sha256(occurrence.encode()).hexdigest()[:16]
        return SystemEvent(
            id=f"svc-{slug(service.name, 'service')}-{kind}-{digest}",
            type=EventType.HEALTH_CHECK,
            source=f"supervisor:{service.name}",
            severity=Severity.HIGH if kind == "down" else Severity.MEDIUM,
            data={
                "kind": kind,
                "service": service.name,
                "healthy": False,
                "state": state,
                **{k: info.get(k) for k in ("pid", "start", "stop", "exitstatus", "spawnerr")},
                "health": health.detail if health else None,
            },
        )

    # ----- decide ---------------------------------------------------------------------------------------

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        settings = self.settings
        if event.type == EventType.ALERT:
            if event.data.get("status") == "resolved":
                return None
            labels = event.data.get("labels") or {}
            keys = ("service", "program", "supervisor_program")
            name, kind = next((labels.get(k) for k in keys if labels.get(k)), None), "alert"
        else:
            if event.data.get("healthy") is True:
                return None
            name, kind = event.data.get("service"), str(event.data.get("kind") or "unhealthy")
        service = settings.service(name) if isinstance(name, str) else None
        if service is None:
            return None
        recent = await asyncio.to_thread(self.history.restarts, service.name)
        escalated = len(recent) >= settings.max_restarts
        window = f"in the last {settings.restart_window_seconds:g}s"
        if escalated:
            risk = settings.escalation_risk
            why = (
                f"restart limit reached: {len(recent)} restart(s) {window} (max {settings.max_restarts}); "
                "escalated, a person decides"
            )
        else:
            risk = settings.risk_when_down if kind == "down" else settings.risk_when_unhealthy
            why = f"{len(recent)} of {settings.max_restarts} restart(s) used {window}"
        return AgentAction(
            id="-",
            agent_id=self.agent_id,
            type=ActionType.RESTART_SERVICE,
            description=f"Restart {service.name}: it {WHAT.get(kind, kind)} ({why})",
            target_resources=[f"supervisor:{service.name}"],
            risk_level=risk,
            estimated_impact=(
                "starts a program that is down"
                if kind == "down"
                else "stops and starts the program: a short interruption of what it serves"
            ),
            parameters={
                "kind": ACTION_KIND,
                "service": service.name,
                "trigger": kind,
                "escalated": escalated,
                "restarts_in_window": len(recent),
            },
        )

    def _service_of(self, action: AgentAction) -> Service:
        name = action.parameters.get("service")
        service = self.settings.service(name) if isinstance(name, str) else None
        if action.parameters.get("kind") != ACTION_KIND or service is None:
            raise NonRetryableActionError(f"not a restart of a watched program: {name!r}")
        return service

    # ----- plan, execute, verify --------------------------------------------------------------------------

    async def _plan_specific(self, action: AgentAction) -> Plan:
        service = self._service_of(action)
        return await asyncio.to_thread(self._plan, action, service)

    def _plan(self, action: AgentAction, service: Service) -> Plan:
        settings = self.settings
        info = Supervisor(settings.supervisor).info(service.name)  # unreachable: retried, then fails
        state = str(info["statename"])
        health = check_http(service) if state == "RUNNING" else None
        running = state in ("RUNNING", "STARTING", "BACKOFF")
        changes = ([f"supervisor.stopProcess({service.name!r}, wait=True)"] if running else []) + [
            f"supervisor.startProcess({service.name!r}, wait=True)"
        ]
        recent = self.history.restarts(service.name)
        escalated = action.parameters.get("escalated")
        details = [
            f"supervisord: {settings.supervisor.url}",
            f"now: {service.name} is {describe(info)}" + (f"; {health.detail}" if health else ""),
            f"restarts by this agent in the last {settings.restart_window_seconds:g}s: {len(recent)} "
            f"(limit {settings.max_restarts})"
            + (
                "; ESCALATED: the limit is reached, this restart runs only with approval" if escalated else ""
            ),
            "verify: state RUNNING"
            + (f" and GET {service.health_url} -> {service.expect_status}" if service.health_url else "")
            + f" within {settings.verify_timeout_seconds:g}s",
            "if the program is healthy again when the action runs, nothing is restarted; "
            "a restart cannot be rolled back",
        ]
        verb = "stop and start" if running else "start"
        return Plan(
            summary=f"{verb} {service.name} through supervisord ({describe(info)})",
            details="\n".join(details),
            changes=changes,
        )

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        service = self._service_of(action)
        escalated = bool(action.parameters.get("escalated"))
        async with self.ledger.entry(action) as entry:
            return await asyncio.to_thread(
                restart_once, entry, self.settings, service, self.history, escalated
            )

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        service = self._service_of(action)
        return await asyncio.to_thread(healthy_within, self.settings, service)

    # ----- health ---------------------------------------------------------------------------------------

    async def _health_check_specific(self) -> dict[str, bool]:
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, bool]:
        supervisor = Supervisor(self.settings.supervisor)
        checks: dict[str, bool] = {}
        try:
            checks["supervisord reachable"] = (
                supervisor.call("supervisor.getState").get("statename") == "RUNNING"
            )
        except (SupervisorError, xmlrpc.client.Fault):
            return {"supervisord reachable": False}
        for service in self.settings.services:
            try:
                supervisor.info(service.name)
                checks[f"{service.name} known to supervisord"] = True
            except (NonRetryableActionError, SupervisorError):
                checks[f"{service.name} known to supervisord"] = False
        return checks
