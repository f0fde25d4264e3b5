"""The overflow's two calls: keeping events for an agent (signal-with-start of its overflow
workflow) and handing them back to it (its ``intake`` update, which may refuse: queue full)."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from aiops.contracts.agent import (
    INTAKE,
    INTAKE_REFUSED,
    EventOutcome,
    IntakeAnswer,
    IntakeRequest,
    agent_workflow_id,
)
from aiops.contracts.overflow import (
    HOLD_EVENTS,
    OVERFLOW_WORKFLOW_TYPE,
    HandBackRequest,
    HandBackResult,
    OverflowInput,
    SpillRequest,
    overflow_workflow_id,
)


class OverflowActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    def all(self) -> list[Any]:
        return [self.spill_events, self.hand_back]

    @activity.defn
    async def spill_events(self, request: SpillRequest) -> None:
        """Signal-with-start: a retried call may hold an event twice; the hand-back's dedup by
        event id makes the second copy a duplicate."""
        await self.client.start_workflow(
            OVERFLOW_WORKFLOW_TYPE,
            OverflowInput(agent_id=request.agent_id),
            id=overflow_workflow_id(request.agent_id),
            task_queue=request.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=HOLD_EVENTS,
            start_signal_args=[request.events],
        )

    @activity.defn
    async def hand_back(self, request: HandBackRequest) -> HandBackResult:
        handle = self.client.get_workflow_handle(agent_workflow_id(request.agent_id))
        try:
            answer = await handle.execute_update(
                INTAKE, IntakeRequest(events=request.events, compact=True), result_type=IntakeAnswer
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == INTAKE_REFUSED:
                details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
                return HandBackResult(
                    taken=False,
                    gone=not details.get("retryable", True),
                    room=int(details.get("room", 0)),
                    reason=cause.message,
                )
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return HandBackResult(taken=False, gone=True, reason=f"no agent workflow: {err.message}")
            raise
        # Taken; an event the queue's byte bound refused alone is held again.
        kept = [
            a.event_id
            for a in answer.answers
            if a.outcome == EventOutcome.REJECTED and a.event_id and "queue is full" in (a.reason or "")
        ]
        return HandBackResult(taken=True, kept=kept)
