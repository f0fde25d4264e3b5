"""The action workflow's audit rows: the decision, approvals, attempts and outcome.

Keys carry the run id, so they stay unique if an action id is ever reused
after retention, while a retried ``record_audit`` activity writes each row once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.action import ActionInput, ActionRecord
    from aiops.contracts.activities import AttemptLog, AuditRecord, AuditStep, ExecutionAttempt
    from workflows.audit_outbox import AuditOutbox


class ActionAudit:
    def __init__(self, record: Callable[[], ActionRecord]) -> None:
        self._action = record
        self._outbox = AuditOutbox()

    def sink_available(self, available: bool) -> None:
        self._outbox.sink_available(available)

    def record(self, step: AuditStep, name: str, actor: str = "", **detail: Any) -> None:
        action = self._action().action
        self._outbox.add(
            AuditRecord(
                agent_id=action.agent_id,
                action_id=action.id,
                step=step,
                key=f"{action.id}/{workflow.info().run_id}:{name}",
                actor=actor,
                occurred_at=workflow.now(),
                detail=detail,
            )
        )

    def decision(self, input: ActionInput) -> None:
        d, action = input.decision, input.action
        self.record(
            AuditStep.DECISION,
            "decision",
            outcome=d.outcome.value,
            reason=d.reason,
            required_approvals=d.required_approvals,
            allowed_roles=d.allowed_roles,
            risk_level=action.risk_level.value,
            description=action.description,
            event_id=input.event.id,
            event_type=input.event.type.value,
            correlation_id=input.event.correlation_id,
            config_version=input.config.version,
        )

    def execution(self, attempts: list[ExecutionAttempt], final_error: str | None) -> None:
        """One row per attempt, then the result (``final_error`` when execution gave up)."""
        for a in attempts:
            self.record(
                AuditStep.EXECUTION_ATTEMPT,
                f"attempt:{a.attempt}",
                actor=a.worker,
                attempt=a.attempt,
                started_at=a.started_at.isoformat(),
                error=a.error,
            )
        result = self._action().result if final_error is None else None
        self.record(
            AuditStep.EXECUTION_RESULT,
            "result",
            attempts=len(attempts),
            success=result.success if result else False,
            message=result.message if result else "",
            error=final_error or (result.error if result else None),
            data=result.data if result else {},
        )

    async def drained(self) -> None:
        await self._outbox.drained()


def attempts_of(err: ActivityError) -> list[ExecutionAttempt]:
    """The attempt log a failed execution left: in its error's details, or (after a
    timeout) in its last heartbeat."""
    cause = err.__cause__
    details: Any = ()
    if isinstance(cause, ApplicationError):
        details = cause.details
    elif cause is not None and hasattr(cause, "last_heartbeat_details"):
        details = cause.last_heartbeat_details
    try:
        return AttemptLog.model_validate(details[0]).attempts if details else []
    except (ValidationError, TypeError, IndexError):
        return []
