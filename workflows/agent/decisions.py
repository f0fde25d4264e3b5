"""Deciding the queue, one batch per step: one decision activity per batch, so a storm does not
become a history explosion.

A batch is decided in a local activity when the agent's config allows it (fast, few history
events) and the workflow task is not already long, else in a regular activity on the agent
type's hooks queue. Under a raw signal storm (told from the history's length alone, see
``_storm``) it is decided in a regular activity on the workflow's own task queue, dispatched
eagerly to this worker: the task ends at once, and the result is a history event. The decision
writes the batch's audit rows itself when it can; a failed batch is bisected to find a poison
event (``event_intake.py``). Each proposed action is started by ``actions.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic_core import to_json
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts.activities import (
        NON_RETRYABLE_AGENT_ERRORS,
        DecideEventsInput,
        DecideEventsResult,
        DecisionAudit,
        EventDecision,
    )
    from aiops.contracts.models import SystemEvent
    from workflows.agent.raw import JSON_PLAIN
    from workflows.failures import cause_message

if TYPE_CHECKING:
    from workflows.agent.actions import Actions
    from workflows.agent.context import AgentContext

DECIDE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)
# Local-activity batches one workflow task may decide before the next goes by a regular activity.
LOCAL_BATCHES_PER_TASK = 10
# History events added since the task of the last batch from which this task is a storm's, and
# below which a storm is over. A workflow task held open by local activities makes the server
# buffer what arrives meanwhile; past 100 buffered events (history.maximumBufferedEventsBatch) it
# force-fails the task, which loses the local activities' results (their hooks run again), and the
# next attempt takes everything buffered: under 50 raw signals in flight the tasks grew until one
# passed the SDK's deadlock detector. A quiet agent adds a handful of events between two batch
# tasks; a task of 10 local batches and a regular one adds 27 of its own, so 30 means signals or
# updates came in meanwhile. A storm's cycle (one regular activity per task) adds 6 of its own
# plus what arrived (see docs/budgets-and-priority.md).
STORM_EVENTS = 30
CALM_EVENTS = 16
# Marks the runs that decide a storm's batches by regular activity: a run recorded before
# (its storms, and g1_agent_lifecycle's paused backlog, decided locally) replays as it ran.
# Deprecate (workflow.deprecate_patch) once every agent has continued as new on a build with it;
# remove with the next history generation (g2_), docs/deploy.md "A patch's lifecycle".
STORM_PATCH = "decide-storm-by-activity"
# Under a storm a run continues as new once its history is this long. A task the server force-closes
# makes the worker replay the whole run; the more signals arrive meanwhile (over 100: force-closed
# again), the larger the next attempt, until the storm ends and one activation applies them all
# (past the SDK's 2 s deadlock detector on a starved CPU). A short run's replay is short enough
# for the next attempt to complete.
STORM_RUN_EVENTS = 1500
# A decision run as a regular activity heartbeats (activities/agent_activities.py) within this.
DECIDE_HEARTBEAT = timedelta(seconds=10)


class Decisions:
    def __init__(self, ctx: AgentContext, actions: Actions) -> None:
        self._ctx = ctx
        self._actions = actions
        self._task_length = 0  # the history length at the last batch: see _task_is_long
        self._batches_in_task = 0
        self._storm_length: int | None = None  # the history length at the last batch: see _storm
        self._in_storm = False
        self._storm_patched = False  # this run decides storms by activity (STORM_PATCH)

    async def decide_batch(self) -> None:
        ctx = self._ctx
        batch, filtered = ctx.intake.next_batch()
        result = DecideEventsResult()
        # The decision writes the batch's audit rows itself: then an event costs no audit activity.
        if batch:
            try:
                result = await self._decide(batch, filtered)
            except ActivityError as err:
                await self._batch_failed(batch, cause_message(err))
                return
            ctx.audit_log_is(result.audit_log)
        # No decision ran, or its write failed: the outbox writes them (if there is an audit log
        # at all: without one no row is even built, nor a decision object per quiet event).
        rows = not result.audited and ctx.audit.has_sink
        # The result's own form decides how it is read (replay reads what was recorded).
        settled = ctx.intake.settle(batch, filtered, result.decisions, quiet_rest=result.compact, rows=rows)
        ctx.count("filtered", len(settled.filtered))
        if rows:
            for event in settled.filtered:
                ctx.audit.event(event, EventDecision(event_id=event.id), filtered=True)
            for event, decision in settled.audited:
                ctx.audit.event(event, decision)
        for message, event_id in settled.notes:
            ctx.note_error(message, event_id)
        ctx.count("processed", settled.processed)
        if settled.proposals:
            await asyncio.gather(*(self._actions.start(e, d) for e, d in settled.proposals))
        if settled.retry_after_seconds is not None:
            await workflow.sleep(timedelta(seconds=settled.retry_after_seconds))

    async def _batch_failed(self, batch: list[SystemEvent], reason: str) -> None:
        ctx = self._ctx
        failure = ctx.intake.batch_failed(batch, reason)
        ctx.note_error(failure.note)
        if failure.gave_up is not None:
            event = failure.gave_up
            ctx.count("processed")
            ctx.note_error(failure.gave_up_note, event.id)
            ctx.audit.event(event, EventDecision(event_id=event.id, error=reason, retryable=False))
            return
        await workflow.sleep(timedelta(seconds=failure.retry_after_seconds))

    async def _decide(self, batch: list[SystemEvent], filtered: list[SystemEvent]) -> DecideEventsResult:
        """One activity call decides the whole batch (local by default: fast, few history events)."""
        s = self._ctx.state
        runtime = s.config.runtime
        audit = None
        if self._ctx.audit.has_sink:
            tried = s.decide_attempts
            attempts = {e.id: tried[e.id] for e in [*batch, *filtered] if e.id in tried}
            audit = DecisionAudit(run_id=workflow.info().run_id, attempts=attempts, filtered=filtered)
        request = self._input(DecideEventsInput(config=s.config, events=batch, audit=audit, compact=True))
        timeout = timedelta(seconds=runtime.decision_timeout_seconds)
        if runtime.local_decisions and self._storm() and workflow.patched(STORM_PATCH):
            self._storm_patched = True
            decided = await workflow.execute_activity_method(
                AgentActivities.decide_events,
                args=[request],
                task_queue=workflow.info().task_queue,  # eager: this worker runs it, no poller wait
                start_to_close_timeout=timeout,
                heartbeat_timeout=DECIDE_HEARTBEAT if timeout > DECIDE_HEARTBEAT * 3 else None,
                retry_policy=DECIDE_RETRY,
            )
            if not decided.unserved:
                return decided
        elif runtime.local_decisions and not self._task_is_long():
            decided = await workflow.execute_local_activity_method(
                AgentActivities.decide_events,
                args=[request],
                start_to_close_timeout=timeout,
                retry_policy=DECIDE_RETRY,
            )
            if not decided.unserved:
                return decided
            # This worker lacks the agent's type (another pool's agent): decide where the type is.
        return await workflow.execute_activity_method(
            AgentActivities.decide_events,
            args=[request],
            task_queue=self._ctx.hooks_queue(),
            start_to_close_timeout=timeout,
            # A worker that dies mid-decision is noticed within this, not after the whole timeout.
            heartbeat_timeout=DECIDE_HEARTBEAT if timeout > DECIDE_HEARTBEAT * 3 else None,
            retry_policy=DECIDE_RETRY,
        )

    def _input(self, request: DecideEventsInput) -> RawValue:
        """``request`` as the JSON payload the SDK would make of it, with each event's JSON as the
        intake measured it (``EventIntake.json_of``) instead of serialized again: the same bytes
        (tests/unit/test_decide_input.py), read by the activity as a ``DecideEventsInput``. The
        input of an activity is not in the history (only what it is scheduled as), so replay is
        unchanged; serializing every event a second time was a tenth of a batch's workflow time."""
        return decide_input(request, self._ctx.intake.json_of(request.events))

    def storm_run_is_long(self) -> bool:
        """Time to continue as new: a storm lasts and the run's history reached
        ``STORM_RUN_EVENTS`` (read at the task's start, as replay reads it)."""
        return (
            self._in_storm
            and self._storm_patched
            and workflow.info().get_current_history_length() >= STORM_RUN_EVENTS
        )

    def _storm(self) -> bool:
        """Whether this workflow task is a storm's: the history grew by ``STORM_EVENTS`` or more
        since the task of the last batch (by ``CALM_EVENTS`` or more while a storm lasts). Read
        from the history's length at this task's start, the same on every replay, whatever
        activations the signals came in and whatever a task the server refused had seen; a batch
        in the same task as the last one is the storm's if that one was. A run continued under a
        storm starts in it (carried in the state, the same on replay): each new run's first task
        was otherwise decided locally, and under a storm the server force-closed it."""
        length = workflow.info().get_current_history_length()
        if self._storm_length is None:  # the run's first batch: a storm the last run ended in lasts
            self._storm_length = length
            self._in_storm = self._ctx.state.in_storm or length >= STORM_EVENTS
        elif length != self._storm_length:
            grown, self._storm_length = length - self._storm_length, length
            self._in_storm = grown >= (CALM_EVENTS if self._in_storm else STORM_EVENTS)
        self._ctx.state.in_storm = self._in_storm  # carried: see AgentRunState.in_storm
        return self._in_storm

    def _task_is_long(self) -> bool:
        """Whether this workflow task already decided ``LOCAL_BATCHES_PER_TASK`` batches in local
        activities (a long backlog): the next batch is then decided by a regular activity, which
        ends the task, so no task grows without bound while more events and updates arrive. The
        history length changes only between tasks, so it tells (deterministically) whether the
        last batch was in this one."""
        length = workflow.info().get_current_history_length()
        self._batches_in_task = self._batches_in_task + 1 if length == self._task_length else 1
        self._task_length = length
        return self._batches_in_task > LOCAL_BATCHES_PER_TASK


def decide_input(request: DecideEventsInput, events_json: list[bytes]) -> RawValue:
    """``request`` as a JSON payload, its events given as their JSON (``events_json``, in order)."""
    data = b'{"config":%s,"events":[%s],"audit":%s,"compact":%s}' % (
        to_json(request.config),
        b",".join(events_json),
        to_json(request.audit),
        b"true" if request.compact else b"false",
    )
    return RawValue(Payload(metadata={"encoding": JSON_PLAIN}, data=data))
