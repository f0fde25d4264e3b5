"""The agent workflow's audit rows: which steps it records, and under which keys.

Keys carry the run id, so a later run (or the same event id long after the
dedup window) is recorded again, while a retried ``record_audit`` activity
writes each row once. Malformed payloads are recorded up to a cap per run: a
flood of garbage must not keep the outbox from draining before continue-as-new.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.activities import AuditRecord, AuditStep, EventDecision
    from aiops.contracts.agent import AgentRunState
    from aiops.contracts.audit_rows import event_record, lifecycle_record
    from aiops.contracts.models import SystemEvent
    from workflows.audit_outbox import AuditOutbox

AUDITED_REJECTIONS_PER_RUN = 100


class AgentAudit:
    def __init__(self, state: AgentRunState) -> None:
        self._state = state
        self._outbox = AuditOutbox()
        self._rejections = 0

    def record(self, step: AuditStep, key: str, actor: str = "", **detail: Any) -> None:
        agent_id = self._state.config.id
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

    def event_row(
        self, event: SystemEvent, decision: EventDecision, filtered: bool = False, incident: str | None = None
    ) -> AuditRecord:
        """The row for one event's decision (built the same way by a decision that writes its own)."""
        s = self._state
        return event_record(
            s.config.id,
            workflow.info().run_id,
            event,
            decision,
            # One row per decision attempt: a retried decision must not hide the final outcome.
            s.decide_attempts.get(event.id, 0),
            s.config.version,
            workflow.now(),
            filtered=filtered,
            incident=incident,
        )

    def event(
        self, event: SystemEvent, decision: EventDecision, filtered: bool = False, incident: str | None = None
    ) -> None:
        self._outbox.add(self.event_row(event, decision, filtered, incident))

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
        """A step of the agent's life (a start's local activity writes its own ``started`` row,
        built by the same ``lifecycle_record``)."""
        info = workflow.info()
        row = lifecycle_record(
            self._state.config.id, info.run_id, what, sequence, actor, workflow.now(), **detail
        )
        self._outbox.add(row)

    def config(self, step: AuditStep, author: str, version: int | None, **detail: Any) -> None:
        n = workflow.info().get_current_history_length()
        self.record(step, f"{step.value}:{version}:{n}", actor=author, version=version, **detail)

    def add(self, row: AuditRecord) -> None:
        self._outbox.add(row)

    def sink_available(self, available: bool) -> None:
        self._outbox.sink_available(available)

    @property
    def has_sink(self) -> bool:
        return self._outbox.has_sink

    def is_drained(self) -> bool:
        return self._outbox.is_drained()

    async def drained(self) -> None:
        await self._outbox.drained()
