"""The agent's side of its actions: starting one per proposal, hearing their outcomes, and telling
them all to hold, go ahead or abort.

An action reports its status changes with ``action_finished``; an end is counted only once the
action itself confirms it (anyone can send that signal, and a success resets the circuit
breaker's count). Telling actions something is best effort: a finished action needs nothing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts.action import AbortRequest, ActionMessages, ActionOutcome, HoldRequest
    from aiops.contracts.activities import AuditStep, EventDecision
    from aiops.contracts.agent import ACTION_FINISHED, PendingAction
    from aiops.contracts.models import SystemEvent
    from workflows.action_launch import ActionRefusedError, launch_action
    from workflows.agent.state import record_outcome
    from workflows.failures import cause_message

if TYPE_CHECKING:
    from workflows.agent.context import AgentContext

# External signals sent at once when telling actions to hold or release (limit: 2,000).
SIGNALS_PER_STEP = 500


class Actions:
    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx

    async def start(self, event: SystemEvent, decision: EventDecision) -> None:
        assert decision.action is not None
        try:
            if await launch_action(self._ctx.state, event, decision.action, self._ctx.launched_this_run):
                self._ctx.children_this_run += 1
        except ActionRefusedError as refused:
            self.refuse(event, refused.reason)

    def refuse(self, event: SystemEvent, reason: str) -> None:
        """A proposal that cannot become an action (its input is over budget): refused, never
        started, so the agent's workflow task cannot fail on it. Counted, audited, in status."""
        ctx = self._ctx
        ctx.state.counters.actions_refused += 1
        message = f"refused the action proposed for {event.id}: {reason}"
        ctx.note_error(message, event.id)
        ctx.audit.record(
            AuditStep.DECISION, f"action_refused:{event.id}", refused=True, event_id=event.id, reason=reason
        )

    def pending(self) -> list[PendingAction]:
        return list(self._ctx.state.pending_actions.values())

    # ----- outcomes -------------------------------------------------------------

    def finished(self, outcome: ActionOutcome) -> None:
        """A status change is noted at once; an end is confirmed with the action first."""
        ctx = self._ctx
        ctx.signals_this_run += 1
        if outcome.status.is_final:
            if outcome.action_id in ctx.state.pending_actions and outcome.action_id not in ctx.confirming:
                ctx.confirming[outcome.action_id] = asyncio.create_task(self._confirm(outcome))
            return
        record_outcome(ctx.state, outcome)

    async def _confirm(self, claimed: ActionOutcome) -> None:
        """Count an action's end as the action itself records it, not as a signal claims it."""
        ctx = self._ctx
        try:
            seen = await workflow.execute_local_activity_method(
                AgentActivities.action_outcome,
                claimed.action_id,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
                ),
            )
        except ActivityError as err:
            seen, reason = None, f"could not ask it: {cause_message(err)}"
        else:
            reason = "no such action" if seen is None else f"it says it is {seen.status.value}"
        finally:
            ctx.confirming.pop(claimed.action_id, None)
        if seen is not None and seen.status.is_final:
            record_outcome(ctx.state, seen)
            return
        ctx.note_error(
            f"refused {ACTION_FINISHED} for {claimed.action_id} ({claimed.status.value}): {reason}"
        )
        ctx.record_lifecycle(
            "command_refused",
            verb=ACTION_FINISHED,
            channel="signal",
            action_id=claimed.action_id,
            reason=reason,
        )

    # ----- telling every pending action ------------------------------------------

    async def hold_all(self, epoch: int) -> None:
        await self._tell(ActionMessages.hold, HoldRequest(epoch=epoch))

    async def release_all(self, epoch: int) -> None:
        await self._tell(ActionMessages.release, HoldRequest(epoch=epoch))

    async def abort_all(self, reason: str) -> None:
        await self._tell(ActionMessages.abort, AbortRequest(reason=reason))

    async def _tell(self, signal: Any, request: HoldRequest | AbortRequest) -> None:
        async def tell(action_id: str) -> None:
            try:
                await workflow.get_external_workflow_handle(action_id).signal(signal, request)
            except Exception as err:  # a finished action needs nothing
                workflow.logger.debug("could not signal %s: %s", action_id, err)

        action_ids = list(self._ctx.state.pending_actions)
        for start in range(0, len(action_ids), SIGNALS_PER_STEP):
            await asyncio.gather(*(tell(a) for a in action_ids[start : start + SIGNALS_PER_STEP]))
