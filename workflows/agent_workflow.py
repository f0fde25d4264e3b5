"""AgentWorkflow: one long-running entity per agent, fed events by signal.

Signal handlers only validate and queue; the main loop drains the queue in
batches (one decision activity per batch, so a storm does not become a
history explosion) and starts one ``ActionWorkflow`` per proposed action.
Before the server's history limits it continues as new, carrying the whole
state, queue and dedup window included, once every handler has finished.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.contracts import (
        DECIDE_EVENTS,
        INITIALIZE_AGENT,
        NON_RETRYABLE_AGENT_ERRORS,
        REGISTER_CONFIG,
        STOP_AGENT,
        AgentInitialized,
        ConfigProposal,
        DecideEventsInput,
        DecideEventsResult,
        EventDecision,
        StoredConfig,
    )
    from agents.models import AgentConfig, SystemEvent
    from workflows import metrics
    from workflows import search_attributes as sa
    from workflows.action_launch import launch_action
    from workflows.action_state import ActionOutcome
    from workflows.agent_audit import AgentAudit
    from workflows.agent_reconfigure import CONFIG_RETRY, RELOAD_RETRY, ConfigChanger
    from workflows.agent_state import (
        Admission,
        AgentRunState,
        AgentRunSummary,
        AgentState,
        AgentStatus,
        AgentWorkflowInput,
        EventRejected,
        PendingAction,
        RecentProblem,
        StopRequest,
        admit,
        describe_validation_error,
        event_size,
        parse_event,
        record_outcome,
        record_problem,
        status_of,
        take_batch,
    )
    from workflows.config_change import ConfigApplied
    from workflows.failures import cause_message

# Stay well under the server's 10,000 signals per run whatever the config says.
SIGNALS_PER_RUN_CEILING = 8000
# Long enough to ride out a short outage of whatever the agent initializes against.
INIT_RETRY = RELOAD_RETRY  # initializing and reloading ride out the same short outages
DECIDE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)
MAX_DECIDE_BACKOFF_SECONDS = 60
# An event whose decision fails this often (transiently, or by sinking its batch) is
# recorded as a decision error and dropped: one poison event must not stall the agent.
MAX_DECIDE_ATTEMPTS = 3
# External signals sent at once when telling actions to hold or release (limit: 2,000).
SIGNALS_PER_STEP = 500
# Agents started before the config store existed ran on the version they were given.
CONFIG_STORE_PATCH = "config-store-v1"


@workflow.defn
class AgentWorkflow:
    @workflow.init
    def __init__(self, payload: Any) -> None:
        # The input is decoded here, not by the SDK: a start with an invalid config (say from
        # the `temporal` CLI) then fails this workflow with the problems named, instead of
        # failing every workflow task for ever (and echoing the input in worker logs).
        self._bad_input: str | None = None
        try:
            input = AgentWorkflowInput.model_validate(payload)
        except ValidationError as err:
            self._bad_input = describe_validation_error(err)
            placeholder = AgentConfig(id="invalid-input", name="invalid input", type="none")
            input = AgentWorkflowInput(config=placeholder)
        self._s: AgentRunState = input.carried or AgentRunState(config=input.config)
        self._started_by = input.started_by
        if input.carried is not None:
            self._s.run_number += 1
        self._seen: set[str] = set(self._s.seen_event_ids)
        self._signals_this_run = 0
        self._events_this_run = 0
        self._children_this_run = 0
        self._decide_failures = 0
        self._batch_limit = self._s.config.runtime.batch_size
        self._sizes: dict[str, int] = {e.id: event_size(e) for e in self._s.queue}
        self._queue_bytes = sum(self._sizes.values())
        self._deciding = False  # a batch is being decided and its actions started
        self._audit = AgentAudit(lambda: self._s)
        self._config = ConfigChanger(
            lambda: self._s, self._audit, lambda: self._deciding, self._config_switched
        )

    # ----- main loop -----------------------------------------------------------

    @workflow.run
    async def run(self, payload: Any) -> AgentRunSummary:
        if self._bad_input is not None:
            raise ApplicationError(
                f"invalid agent start input: {self._bad_input}", type="InvalidAgentInput", non_retryable=True
            )
        s = self._s
        if s.state == AgentState.INITIALIZING:
            await self._initialize()
        self._publish_state()
        while True:
            await workflow.wait_condition(
                lambda: self._has_work() or s.stop_request is not None or self._run_is_full()
            )
            if self._has_work():
                await self._process_batch()
            elif s.stop_request is not None:
                break
            if self._run_is_full():  # also while draining for a stop: the request is carried
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and self._audit.is_drained()
                )
                workflow.continue_as_new(AgentWorkflowInput(config=s.config, carried=s))
        return await self._stop()

    async def _initialize(self) -> None:
        s = self._s
        s.started_at = workflow.now()
        try:
            if workflow.patched(CONFIG_STORE_PATCH):
                # Every running config is a stored version: registering the one this agent
                # starts with gives it a version number (the same one if nothing changed).
                stored: StoredConfig | None = await workflow.execute_activity(
                    REGISTER_CONFIG,
                    ConfigProposal(
                        config=s.config, author=self._started_by or "agent start", comment="config at start"
                    ),
                    result_type=StoredConfig | None,  # type: ignore[arg-type]
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=CONFIG_RETRY,
                )
                if stored is not None:
                    s.config = stored.config
            info: AgentInitialized = await workflow.execute_activity(
                INITIALIZE_AGENT,
                s.config,
                result_type=AgentInitialized,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=INIT_RETRY,
            )
        except ActivityError as err:
            s.state = AgentState.FAILED
            s.failure = cause_message(err)
            self._publish_state()
            workflow.logger.error("agent %s failed to initialize: %s", s.config.id, s.failure)
            raise ApplicationError(
                f"agent {s.config.id} failed to initialize: {s.failure}; "
                f"{len(s.queue)} queued event(s) are in this failure's details",
                [e.model_dump(mode="json") for e in s.queue],
                type="AgentInitializationFailed",
                non_retryable=True,
            ) from err
        s.subscribed_event_types = info.subscribed_event_types
        s.state = AgentState.PAUSED if s.pause_requested else AgentState.RUNNING
        self._record_lifecycle("started", actor=self._started_by, config_version=s.config.version)

    def _has_work(self) -> bool:
        s = self._s
        draining = s.stop_request is not None and s.stop_request.drain
        return bool(s.queue) and (s.state == AgentState.RUNNING or draining) and not self._config.switching

    def _run_is_full(self) -> bool:
        """Time to continue as new: the server suggests it, or this run took its share."""
        return (
            workflow.info().is_continue_as_new_suggested()
            or self._events_this_run >= self._s.config.runtime.max_events_per_run
            or self._signals_this_run >= SIGNALS_PER_RUN_CEILING
            or self._children_this_run >= self._s.config.runtime.max_actions_per_run
        )

    async def _process_batch(self) -> None:
        self._deciding = True
        try:
            await self._decide_batch()
        finally:
            self._deciding = False

    async def _decide_batch(self) -> None:
        s = self._s
        batch, filtered = take_batch(s, self._batch_limit)
        result = DecideEventsResult()
        if batch:
            try:
                result = await self._decide(batch)
            except ActivityError as err:
                await self._batch_failed(batch, cause_message(err))
                return
        self._decide_failures = 0
        self._batch_limit = s.config.runtime.batch_size
        del s.queue[: len(batch) + len(filtered)]
        self._forget_sizes([*batch, *filtered])
        s.counters.events_filtered += len(filtered)
        self._count("filtered", len(filtered))
        for event in filtered:
            self._audit.event(event, EventDecision(event_id=event.id), filtered=True)
        by_id = {e.id: e for e in batch}
        starts, retry = [], []
        processed_before = s.counters.events_processed
        for decision in result.decisions:
            event = by_id.get(decision.event_id)
            if event is None:
                continue
            self._audit.event(event, decision)
            if decision.error is not None:
                attempts = s.decide_attempts.get(event.id, 0) + 1
                if decision.retryable and attempts < MAX_DECIDE_ATTEMPTS:
                    s.decide_attempts[event.id] = attempts
                    retry.append(event)
                    self._note_error(f"{decision.error} (attempt {attempts}; will retry)", event.id)
                    continue
                s.decide_attempts.pop(event.id, None)
                s.counters.events_processed += 1
                s.counters.decision_errors += 1
                self._note_error(decision.error, event.id)
                continue
            s.decide_attempts.pop(event.id, None)
            s.counters.events_processed += 1
            if decision.action is not None:
                starts.append(self._start_action(event, decision))
        self._count("processed", s.counters.events_processed - processed_before)
        if starts:
            await asyncio.gather(*starts)
        if retry:
            s.queue.extend(retry)
            for e in retry:
                self._sizes[e.id] = event_size(e)
                self._queue_bytes += self._sizes[e.id]
            await workflow.sleep(timedelta(seconds=2 ** max(s.decide_attempts[e.id] for e in retry)))

    async def _batch_failed(self, batch: list[SystemEvent], reason: str) -> None:
        """The decision step itself failed: shrink the batch until the culprit stands alone.

        Events stay queued; a lone event that keeps failing is recorded as a decision
        error and dropped, so one poison event cannot stall the agent for ever.
        """
        s = self._s
        self._decide_failures += 1
        self._note_error(f"deciding {len(batch)} event(s) failed: {reason}")
        if len(batch) == 1:
            event = batch[0]
            attempts = s.decide_attempts.get(event.id, 0) + 1
            s.decide_attempts[event.id] = attempts
            if attempts >= MAX_DECIDE_ATTEMPTS:
                s.queue.remove(event)
                self._forget_sizes([event])
                s.decide_attempts.pop(event.id, None)
                s.counters.events_processed += 1
                s.counters.decision_errors += 1
                self._count("processed")
                self._note_error(f"gave up on event after {attempts} failed decisions: {reason}", event.id)
                self._audit.event(event, EventDecision(event_id=event.id, error=reason, retryable=False))
                return
        self._batch_limit = max(1, len(batch) // 2)
        backoff = min(2**self._decide_failures, MAX_DECIDE_BACKOFF_SECONDS)
        await workflow.sleep(timedelta(seconds=backoff))

    async def _decide(self, batch: list[SystemEvent]) -> DecideEventsResult:
        """One activity call decides the whole batch (local by default: fast, few history events)."""
        runtime = self._s.config.runtime
        request = DecideEventsInput(config=self._s.config, events=batch)
        timeout = timedelta(seconds=runtime.decision_timeout_seconds)
        if runtime.local_decisions:
            return await workflow.execute_local_activity(
                DECIDE_EVENTS,
                request,
                result_type=DecideEventsResult,
                start_to_close_timeout=timeout,
                retry_policy=DECIDE_RETRY,
            )
        return await workflow.execute_activity(
            DECIDE_EVENTS,
            request,
            result_type=DecideEventsResult,
            start_to_close_timeout=timeout,
            retry_policy=DECIDE_RETRY,
        )

    async def _start_action(self, event: SystemEvent, decision: EventDecision) -> None:
        assert decision.action is not None
        if await launch_action(self._s, event, decision.action):
            self._children_this_run += 1

    async def _stop(self) -> AgentRunSummary:
        s = self._s
        was_paused = s.state == AgentState.PAUSED
        s.state = AgentState.STOPPING
        self._publish_state()
        assert s.stop_request is not None
        if not s.stop_request.drain:
            # Not draining: actions that have not started executing end as rejected.
            await self._tell_actions("abort", {"reason": s.stop_request.reason or "the agent stopped"})
        elif was_paused:
            # Draining: approved actions held by the pause may go ahead, nobody could release them later.
            s.hold_epoch += 1
            await self._tell_actions("release", {"epoch": s.hold_epoch})
        try:
            await workflow.execute_activity(
                STOP_AGENT,
                s.config,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            self._note_error(f"stop hook failed: {cause_message(err)}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        s.state = AgentState.STOPPED
        self._publish_state()
        self._record_lifecycle("stopped", reason=s.stop_request.reason, drain=s.stop_request.drain)
        await self._audit.drained()
        return AgentRunSummary(
            agent_id=s.config.id,
            state=s.state,
            counters=s.counters,
            unprocessed_events=list(s.queue),
        )

    # ----- messages ------------------------------------------------------------

    # Every signal takes an optional payload: a signal sent with no input, or the wrong
    # one, is rejected and counted, never a failed workflow task.

    @workflow.signal
    def submit_event(self, payload: Any = None) -> None:
        """One event as JSON; a malformed payload is rejected and counted, never fatal."""
        self._signals_this_run += 1
        self._take(payload)

    @workflow.signal
    def submit_events(self, payload: Any = None) -> None:
        """A batch of events in one signal (a list, or ``{"events": [...]}``)."""
        self._signals_this_run += 1
        items = payload.get("events") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            self._reject('submit_events needs a JSON list of events or {"events": [...]}')
            return
        for item in items:
            self._take(item)

    @workflow.signal
    async def pause(self, payload: Any = None) -> None:
        """Stop taking events off the queue and hold approved actions not yet started."""
        await self._set_paused(True)

    @workflow.signal
    async def resume(self, payload: Any = None) -> None:
        await self._set_paused(False)

    async def _set_paused(self, paused: bool) -> None:
        self._signals_this_run += 1
        s = self._s
        if s.state == AgentState.INITIALIZING:
            s.pause_requested = paused  # applied once initialization ends
            return
        if s.state != (AgentState.RUNNING if paused else AgentState.PAUSED):
            return
        s.state = AgentState.PAUSED if paused else AgentState.RUNNING
        s.hold_epoch += 1
        self._publish_state()
        self._record_lifecycle("paused" if paused else "resumed")
        await self._tell_actions("hold" if paused else "release", {"epoch": s.hold_epoch})

    @workflow.signal
    def reset_circuit_breaker(self, payload: Any = None) -> None:
        """A person closes the circuit breaker; automatic execution may resume."""
        self._signals_this_run += 1
        who = payload.get("by", "unknown") if isinstance(payload, dict) else str(payload or "unknown")
        workflow.logger.info("circuit breaker of %s reset by %s", self._s.config.id, who)
        self._record_lifecycle("circuit_breaker_reset", actor=str(who), was_open=self._s.circuit_open)
        self._s.circuit_open = False
        self._s.consecutive_failures = 0

    @workflow.signal
    def stop(self, payload: Any = None) -> None:
        self._signals_this_run += 1
        try:
            request = StopRequest.model_validate(payload or {})
        except Exception:
            request = StopRequest(reason=str(payload))
        if self._s.stop_request is None:
            self._s.stop_request = request

    @workflow.signal
    def action_finished(self, payload: Any = None) -> None:
        """An action workflow reports a status change or its end."""
        self._signals_this_run += 1
        try:
            outcome = ActionOutcome.model_validate(payload)
        except Exception:
            workflow.logger.warning("ignored a malformed action_finished signal: %r", payload)
            return
        record_outcome(self._s, outcome)

    # ----- configuration ---------------------------------------------------------

    @workflow.update
    async def reconfigure(self, payload: Any = None) -> ConfigApplied:
        """Apply a new config, a rollback, or a stored version, between two events."""
        return await self._config.apply(payload)

    @reconfigure.validator
    def _validate_reconfigure(self, payload: Any = None) -> None:
        self._config.validate(payload)

    def _config_switched(self, new: AgentConfig) -> None:
        self._batch_limit = new.runtime.batch_size
        self._publish_state()

    @workflow.query
    def status(self) -> AgentStatus:
        return status_of(self._s)

    @workflow.query
    def pending_actions(self) -> list[PendingAction]:
        return list(self._s.pending_actions.values())

    # ----- helpers -------------------------------------------------------------

    def _take(self, payload: Any) -> None:
        self._events_this_run += 1
        try:
            event = parse_event(payload, workflow.now())
            size = event_size(event)
            outcome = admit(self._s, self._seen, event, workflow.now(), size, self._queue_bytes)
        except EventRejected as err:
            self._reject(str(err))
            return
        self._count("received")
        if outcome == Admission.ACCEPTED:
            self._sizes[event.id] = size
            self._queue_bytes += size
        if outcome == Admission.DUPLICATE:
            self._count("deduplicated")
            workflow.logger.debug("duplicate event %s ignored", event.id)

    def _forget_sizes(self, events: list[SystemEvent]) -> None:
        for e in events:
            self._queue_bytes -= self._sizes.pop(e.id, 0)

    async def _tell_actions(self, signal: str, payload: dict[str, Any]) -> None:
        async def tell(action_id: str) -> None:
            try:
                await workflow.get_external_workflow_handle(action_id).signal(signal, payload)
            except Exception as err:  # a finished action needs nothing
                workflow.logger.debug("could not %s %s: %s", signal, action_id, err)

        action_ids = list(self._s.pending_actions)
        for start in range(0, len(action_ids), SIGNALS_PER_STEP):
            await asyncio.gather(*(tell(a) for a in action_ids[start : start + SIGNALS_PER_STEP]))

    def _record_lifecycle(self, what: str, actor: str = "", **detail: Any) -> None:
        sequence = self._s.counters.events_received + self._signals_this_run
        self._audit.lifecycle(what, sequence, actor=actor, **detail)

    def _count(self, outcome: str, n: int = 1) -> None:
        metrics.count_events(self._s.config.type, self._s.config.id, outcome, n)

    def _reject(self, reason: str) -> None:
        self._s.counters.events_rejected += 1
        self._count("rejected")
        self._audit.rejection(reason, self._signals_this_run)
        record_problem(self._s.recent_rejections, RecentProblem(at=workflow.now(), message=reason))
        workflow.logger.warning("rejected event payload: %s", reason)

    def _note_error(self, message: str, event_id: str | None = None) -> None:
        record_problem(
            self._s.recent_errors, RecentProblem(at=workflow.now(), message=message, event_id=event_id)
        )
        workflow.logger.warning("agent %s: %s", self._s.config.id, message)

    def _publish_state(self) -> None:
        s = self._s
        workflow.upsert_search_attributes(
            [
                sa.AGENT_ID.value_set(s.config.id),
                sa.AGENT_TYPE.value_set(s.config.type),
                sa.AGENT_STATE.value_set(s.state.value),
            ]
        )
        workflow.set_current_details(
            f"**{s.config.name}** ({s.config.type}) is *{s.state.value}*; config version {s.config.version}"
        )
