"""Events coming in: the ``submit_event(s)`` signals and the ``intake`` update.

Handlers only admit and queue (``event_intake.py`` decides what is accepted, a duplicate, grouped
into an incident or rejected); the main loop decides the queue in batches. The signals take
their payload undecoded (``raw.py``): whatever arrives, even bytes no converter can read, is
rejected, counted and audited, never a failed workflow task or a silently dropped signal. The
update answers for each event; its validator refuses a whole batch, before anything enters
history, when the agent cannot take it now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.activities import EventDecision
    from aiops.contracts.agent import (
        INTAKE_REFUSED,
        AgentState,
        EventAnswer,
        EventOutcome,
        IntakeAnswer,
        IntakeRequest,
    )
    from workflows.agent.event_intake import (
        MAX_QUEUE_BYTES,
        Admission,
        EventRejected,
        QueueFull,
        events_of,
        parse_all,
    )
    from workflows.agent.raw import UndecodablePayload, decoded

if TYPE_CHECKING:
    from workflows.agent.context import AgentContext


class Intake:
    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx

    def submit_event(self, raw: RawValue) -> None:
        """One event as JSON; a malformed payload is rejected and counted, never fatal."""
        self._ctx.signals_this_run += 1
        try:
            payload = decoded(raw)
        except UndecodablePayload as err:
            self._ctx.reject(str(err))
            return
        kept = self._ctx.intake.spill_as_is(payload, len(raw.payload.data), workflow.now())
        if kept is not None:  # the queue is full: the overflow keeps it (overflow.py)
            self._ctx.spill.append(kept)
            self._ctx.state.counters.events_spilled += 1
            return
        self.take_all([payload], spill=True)

    def submit_events(self, raw: RawValue) -> None:
        """A batch of events in one signal (a list, or ``{"events": [...]}``)."""
        self._ctx.signals_this_run += 1
        try:
            items = events_of(decoded(raw))
        except (UndecodablePayload, EventRejected) as err:
            self._ctx.reject(str(err))
            return
        self.take_all(items, spill=True)

    def intake(self, request: IntakeRequest) -> IntakeAnswer:
        self._ctx.signals_this_run += 1
        answers = self.take_all(request.events, keep_accepted=not request.compact)
        return IntakeAnswer(answers=answers, queue_length=len(self._ctx.state.queue), compact=request.compact)

    def validate(self, request: IntakeRequest) -> None:
        """Refuse the whole batch (nothing enters history) when the agent cannot take it now."""
        ctx, s = self._ctx, self._ctx.state
        refusal, retryable = None, True
        room = max(0, s.config.runtime.max_queue - len(s.queue))
        if s.state in (AgentState.STOPPING, AgentState.STOPPED, AgentState.FAILED) or s.stop_request:
            refusal, retryable = (
                f"agent {s.config.id} is {s.state.value}, or stopping; it takes no events",
                False,
            )
        elif ctx.run_is_full(suggested=False):
            # Not the server's suggestion: it can first show in the task that runs this validator,
            # which is dropped with a refused update, so the run would never continue as new and
            # would refuse for ever. Taken, the events are carried; the main loop then continues
            # as new in a task the server keeps.
            refusal = "the agent is about to continue as new; send again in a moment"
        elif (over := len(s.queue) + len(request.events) > s.config.runtime.max_queue) or (
            ctx.intake.queue_bytes > MAX_QUEUE_BYTES * 0.9
        ):
            # Asked only of a full queue (reading every event's severity is not free, and a queue
            # with room takes the batch anyway).
            if ctx.intake.takes_graver(request.events):
                pass  # the full queue makes room: its least grave events go to the overflow
            elif over:
                refusal = (
                    f"the agent's queue is full ({len(s.queue)} of {s.config.runtime.max_queue} events "
                    "waiting); send again later"
                )
            else:
                waiting = ctx.intake.queue_bytes
                refusal = f"the agent's queue is full ({waiting} bytes waiting); send again later"
        if refusal is not None:
            details = {"retryable": retryable, "room": room}  # room: events that would fit now
            raise ApplicationError(refusal, details, type=INTAKE_REFUSED, non_retryable=True)

    def take_all(
        self, payloads: list[Any], keep_accepted: bool = True, spill: bool = False
    ) -> list[EventAnswer]:
        """Admit each payload and answer for each (without ``keep_accepted``: only for those not
        accepted, with their index; see ``IntakeRequest.compact``). The metrics are counted once
        per message, not once per event (a storm's batches of hundreds made that a tenth of the
        intake's cost)."""
        ctx = self._ctx
        now, answers = workflow.now(), []
        received = grouped = duplicates = 0
        ctx.events_this_run += len(payloads)  # read between messages only (run_is_full)
        # Read in one go when every payload is an event (a signal's keep their payloads to spill).
        events = None if spill else parse_all(payloads, now)
        for index, payload in enumerate(payloads):
            try:
                taken = ctx.intake.take(payload if events is None else events[index], now)
            except EventRejected as err:
                if spill and isinstance(err, QueueFull):  # it reached history by signal: kept
                    ctx.spill.append(err.as_json())  # by the overflow (overflow.py)
                    ctx.state.counters.events_spilled += 1
                    continue
                ctx.reject(str(err))
                given = payload.get("id") if isinstance(payload, dict) else None
                answers.append(
                    EventAnswer(
                        event_id=given if isinstance(given, str) else None,
                        outcome=EventOutcome.REJECTED,
                        reason=str(err),
                        index=None if keep_accepted else index,
                    )
                )
                continue
            received += 1
            outcome = taken.admission
            if outcome == Admission.GROUPED:
                grouped += 1
                ctx.audit.event(taken.event, EventDecision(event_id=taken.event.id), incident=taken.incident)
            elif outcome == Admission.DUPLICATE:
                duplicates += 1
            if keep_accepted or outcome != Admission.ACCEPTED:
                answers.append(
                    EventAnswer(
                        event_id=taken.event.id,
                        outcome=EventOutcome(outcome.value),
                        index=None if keep_accepted else index,
                    )
                )
        if ctx.intake.displaced:  # moved out of the full queue by graver events: kept by the overflow
            ctx.spill.extend(ctx.intake.displaced)
            ctx.state.counters.events_spilled += len(ctx.intake.displaced)
            ctx.intake.displaced.clear()
        ctx.count("received", received)
        ctx.count("grouped", grouped)
        ctx.count("deduplicated", duplicates)
        if duplicates:
            workflow.logger.debug("%d duplicate event(s) ignored", duplicates)
        return answers
