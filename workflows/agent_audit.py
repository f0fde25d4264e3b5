"""The agent workflow's audit rows: which steps it records, and under which keys.

Keys carry the run id, so a later run (or the same event id long after the
dedup window) is recorded again, while a retried ``record_audit`` activity
writes each row once. Malformed payloads are recorded up to a cap per run: a
flood of garbage must not keep the outbox from draining before continue-as-new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import AuditRecord, AuditStep, EventDecision
    from agents.models import SystemEvent
    from workflows.action_contract import action_workflow_id
    from workflows.agent_contract import AgentRunState
    from workflows.audit_outbox import AuditOutbox

AUDITED_REJECTIONS_PER_RUN = 100


class AgentAudit:
    def __init__(self, state: Callable[[], AgentRunState]) -> None:
        self._state = state
        self._outbox = AuditOutbox()  # in the workflow's first activation: see AuditOutbox
        self._rejections = 0

    def record(self, step: AuditStep, key: str, actor: str = "", **detail: Any) -> None:
        agent_id = self._state().config.id
        self._outbox.add(
            AuditRecord(
                agent_id=agent_id,
                step=step,
                key=f"{agent_id}/{workflow.info().run_id}:{key}",
                actor=actor,
                occurred_at=workflow.now(),
                detail=detail,
            )
        )

    def event(
        self, event: SystemEvent, decision: EventDecision, filtered: bool = False, incident: str | None = None
    ) -> None:
        s = self._state()
        extra: dict[str, Any] = (
            {"filtered": "the agent does not subscribe to this event type"} if filtered else {}
        )
        if incident is not None:
            extra["incident"] = incident  # grouped: decided with its incident, not alone
        self.record(
            AuditStep.EVENT_RECEIVED,
            # One row per decision attempt: a retried decision must not hide the final outcome.
            f"event:{event.id}:{s.decide_attempts.get(event.id, 0)}:{int(decision.error is None)}",
            **extra,
            event_id=event.id,
            type=event.type.value,
            source=event.source,
            severity=event.severity.value,
            correlation_id=event.correlation_id,
            timestamp=event.timestamp.isoformat(),
            proposed_action=action_workflow_id(s.config.id, event.id) if decision.action else None,
            decision_error=decision.error,
            config_version=s.config.version,
        )

    def rejection(self, reason: str, signal_number: int) -> None:
        if self._rejections >= AUDITED_REJECTIONS_PER_RUN:
            return
        self._rejections += 1
        self.record(
            AuditStep.EVENT_RECEIVED,
            f"rejected:{signal_number}:{self._rejections}",
            rejected=True,
            reason=reason,
        )

    def lifecycle(self, what: str, sequence: int, actor: str = "", **detail: Any) -> None:
        self.record(AuditStep.AGENT_LIFECYCLE, f"{what}:{sequence}", actor=actor, state=what, **detail)

    def config(self, step: AuditStep, author: str, version: int | None, **detail: Any) -> None:
        n = workflow.info().get_current_history_length()
        self.record(step, f"{step.value}:{version}:{n}", actor=author, version=version, **detail)

    def is_drained(self) -> bool:
        return self._outbox.is_drained()

    async def drained(self) -> None:
        await self._outbox.drained()
