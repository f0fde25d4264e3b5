"""The ``postgres`` agent's hooks: detect, decide, plan, execute once, verify, report health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents import ActionResult, ActionType, AgentAction, EventType, Plan, SystemEvent
from agents.base_agent import BaseAgent
from agents.builtin.postgres import events, execute, plan, queries
from agents.builtin.postgres.checks import BLOAT, CONNECTIONS, IMPACT, Check, is_check
from agents.builtin.postgres.settings import PostgresSettings
from agents.ledger import ActionLedger
from agents.registry import register_agent
from aiops.contracts.errors import AgentError, NonRetryableActionError


@register_agent("postgres")
class PostgresAgent(BaseAgent[PostgresSettings]):
    """Long queries, idle transactions, lock chains, bloat and saturation on one PostgreSQL server."""

    pure_decisions = True  # deciding reads only the event and the settings

    @property
    def ledger(self) -> ActionLedger:
        return ActionLedger(self.settings.ledger_dir(self.agent_id))

    @asynccontextmanager
    async def _connection(self, statement_timeout: float | None = None) -> AsyncIterator[Any]:
        conn = await queries.connect(self.settings, self.agent_id, statement_timeout)
        try:
            yield conn
        finally:
            await conn.close()

    # ----- detect ----------------------------------------------------------------------------

    async def _detect_specific(self) -> list[SystemEvent]:
        async with self._connection() as conn:
            return await events.detect(conn, self.settings)

    # ----- decide ----------------------------------------------------------------------------

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.METRIC_THRESHOLD]

    def _check_of(self, event: SystemEvent) -> Check | None:
        """The check an event is about: ours carry it; an outside alert names it by its labels."""
        check = event.data.get("check")
        if event.data.get("detector") == "postgres" and is_check(check):
            return check
        labels = event.data.get("labels")
        if not isinstance(labels, dict):
            return None
        s = self.settings
        if s.instance is not None and labels.get("instance") != s.instance:
            return None
        named = labels.get("aiops_check")
        if is_check(named):
            return named
        return s.alert_names.get(str(labels.get("alertname", "")))

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        if event.data.get("status") == "resolved":
            return None
        check = self._check_of(event)
        if check is None or check not in self.settings.checks:
            return None
        own = event.data.get("detector") == "postgres"
        sessions = [x for x in event.data.get("sessions") or [] if isinstance(x, dict)] if own else []
        tables = [x for x in event.data.get("tables") or [] if isinstance(x, dict)] if own else []
        if own and check == CONNECTIONS and not sessions:
            return None  # saturated, but no idle session to free: nothing this agent may do
        operation = plan.operation(check, self.settings)
        where = self.settings.where()
        if check == BLOAT:
            what = ", ".join(t["table"] for t in tables) or "bloated tables"
            description = f"VACUUM {what} on {where}"
            targets = [t["table"] for t in tables] or [where]
        else:
            pids = ", ".join(str(x["pid"]) for x in sessions) or f"the {check.replace('_', ' ')} sessions"
            description = f"{operation} backend {pids} ({check.replace('_', ' ')}) on {where}"
            targets = [f"pid {x['pid']}" for x in sessions] or [where]
        return AgentAction(
            id=f"pg-{event.id}",
            agent_id=self.agent_id,
            type=ActionType.RUN_COMMAND,
            description=description,
            target_resources=targets,
            risk_level=self.settings.risk_of(check),
            estimated_impact=IMPACT[check],
            parameters={
                "check": check,
                "operation": operation,
                "sessions": sessions,
                "tables": tables,
                "waiting_pids": list(event.data.get("waiting_pids") or []) if own else [],
            },
        )

    # ----- plan ------------------------------------------------------------------------------

    @staticmethod
    def _check_in(action: AgentAction) -> Check:
        check = action.parameters.get("check")
        if not is_check(check):
            raise NonRetryableActionError(f"unknown postgres check {check!r} in the action")
        return check

    async def _plan_specific(self, action: AgentAction) -> Plan:
        check = self._check_in(action)
        async with self._connection() as conn:
            if check == BLOAT:
                return await plan.plan_vacuum(conn, self.settings, action)
            return await plan.plan_sessions(conn, self.settings, action, check)

    # ----- execute ---------------------------------------------------------------------------

    @staticmethod
    def _approved_changes(action: AgentAction) -> list[str] | None:
        approved = action.parameters.get("approved_plan")
        if not isinstance(approved, dict):
            return None
        return [str(c) for c in approved.get("changes") or []]

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        check = self._check_in(action)
        changes = self._approved_changes(action)
        if changes is None:
            raise NonRetryableActionError("no approved plan reached execute: refusing to act blind")
        async with self.ledger.entry(action) as entry:
            if (done := entry.done_result()) is not None:
                return done  # a retry of a finished action: the same answer, nothing signalled again
            if check == BLOAT:
                async with self._connection(self.settings.vacuum_timeout_seconds) as conn:
                    return await execute.execute_vacuum(conn, entry, self.settings, changes)
            operation = str(action.parameters.get("operation"))
            async with self._connection() as conn:
                return await execute.execute_sessions(conn, entry, check, operation, changes)

    # ----- verify ----------------------------------------------------------------------------

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        check = self._check_in(action)
        changes = self._approved_changes(action) or []
        deadline = time.monotonic() + self.settings.verify_timeout_seconds
        while True:
            async with self._connection() as conn:
                if await execute.fixed(conn, self.settings, check, changes):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)

    # ----- health ------------------------------------------------------------------------------

    async def _initialize_agent_specific(self) -> None:
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            raise AgentError("the postgres agent needs asyncpg: pip install asyncpg") from None

    async def _health_check_specific(self) -> dict[str, bool]:
        try:
            conn = await queries.connect(self.settings, self.agent_id)
        except AgentError:
            return {"postgres reachable": False}
        try:
            may_signal = await conn.fetchval(
                "SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
                " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            )
            return {"postgres reachable": True, "may signal backends": bool(may_signal)}
        finally:
            await conn.close()
