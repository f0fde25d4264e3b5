"""AgentWorkflow: one long-running entity per agent, fed events by signal.

Signal handlers only validate and queue (``EventIntake``); the main loop
drains the queue in batches (one decision activity per batch, so a storm does
not become a history explosion) and starts one ``ActionWorkflow`` per
proposed action. Before the server's history limits it continues as new,
carrying the whole state, queue and dedup window included, once every handler
has finished. Callers use the contract in ``agent_contract.py``.

Concurrency: the batch step and a config switch both hold ``_step_lock``, so a
config changes only between two batches (as in the SDK's
``safe_message_handlers`` sample, a lock, not flags).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.agent_activities import AgentActivities
    from activities.config_activities import ConfigActivities
    from activities.detector_activities import DetectorActivities
    from aiops.contracts import search_attributes as sa
    from aiops.contracts.action import AbortRequest, ActionOutcome, HoldRequest
    from aiops.contracts.activities import (
        NON_RETRYABLE_AGENT_ERRORS,
        AgentInitialized,
        ConfigProposal,
        DecideEventsInput,
        DecideEventsResult,
        DecisionAudit,
        DetectorSchedule,
        EventDecision,
        StartAgentCall,
        every_decision,
    )
    from aiops.contracts.agent import (
        ACTION_FINISHED,
        AGENT_INITIALIZATION_FAILED,
        COMMAND_REFUSED,
        HOLD_STATE,
        INTAKE_REFUSED,
        INVALID_AGENT_INPUT,
        PAUSE,
        PENDING_ACTIONS,
        RESET_CIRCUIT_BREAKER,
        RESUME,
        STATUS,
        STOP,
        SUBMIT_EVENT,
        SUBMIT_EVENTS,
        UPGRADE,
        WORKFLOW_TYPE,
        AgentCommand,
        AgentRunState,
        AgentRunSummary,
        AgentState,
        AgentStatus,
        AgentWorkflowInput,
        CommandApplied,
        CommandRequest,
        ConfigApplied,
        EventAnswer,
        EventOutcome,
        HoldState,
        IntakeAnswer,
        IntakeRequest,
        PendingAction,
        RecentProblem,
        ReconfigureRequest,
        StopRequest,
        hooks_task_queue,
    )
    from aiops.contracts.errors import describe_validation_error
    from aiops.contracts.health_summary import health_summary
    from aiops.contracts.models import AgentConfig, AgentVerb, SystemEvent
    from aiops.contracts.operator_message import OperatorMessage
    from workflows import metrics
    from workflows.action_launch import launch_action
    from workflows.action_workflow import ActionWorkflow
    from workflows.agent_audit import AgentAudit
    from workflows.agent_reconfigure import CONFIG_RETRY, RELOAD_RETRY, ConfigChanger
    from workflows.agent_state import MAX_PENDING_ACTIONS, record_outcome, record_problem, status_of
    from workflows.command_gate import (
        CommandVerdict,
        check_command,
        forget_expired,
        reconfigure_digest,
        stop_digest,
    )
    from workflows.event_intake import MAX_QUEUE_BYTES, Admission, EventIntake, EventRejected, events_of
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
# Local-activity batches one workflow task may decide before the next goes by a regular activity.
LOCAL_BATCHES_PER_TASK = 10
# A decision run as a regular activity heartbeats (activities/agent_activities.py) within this.
DECIDE_HEARTBEAT = timedelta(seconds=10)
# External signals sent at once when telling actions to hold or release (limit: 2,000).
SIGNALS_PER_STEP = 500


# Pinned (under Worker Versioning) to the build a run started on; each continue-as-new starts the
# next run on the current build (see run), so an agent moves to new code when its run is full or
# a person asks (the upgrade command), never in the middle of a run.
@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
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
        # The SDK keeps the run's arguments for the run's whole life; this dict tree (about 9 KB
        # per cached agent) is read only here. A replay decodes it anew.
        if isinstance(payload, dict):
            payload.clear()
        self._state: AgentRunState = input.carried or AgentRunState(config=input.config)
        self._started_by = input.started_by
        if input.carried is not None:
            self._state.run_number += 1
        self._intake = EventIntake(self._state)
        self._signals_this_run = 0
        self._events_this_run = 0
        self._children_this_run = 0
        self._step_lock = asyncio.Lock()  # held by a batch step and by a config switch
        self._task_length = 0  # the history length at the last batch: see _task_is_long
        self._batches_in_task = 0
        self._detector_stale = False  # the config changed: bring the detector schedule in line
        self._upgrade_requested = False  # a person asked for continue-as-new now: see _request_upgrade
        self._audit = AgentAudit(lambda: self._state)
        self._audit.sink_available(self._state.audit_log)  # as the last run learned it
        self._confirming: dict[str, asyncio.Task[None]] = {}  # actions whose claimed end is being confirmed
        self._config = ConfigChanger(
            lambda: self._state,
            self._audit,
            self._step_lock,
            self._config_switched,
            lambda: self._hooks_queue(),
            self._authorize_config_change,
        )

    # ----- main loop -----------------------------------------------------------

    @workflow.run
    async def run(self, payload: Any) -> AgentRunSummary:
        if self._bad_input is not None:
            raise ApplicationError(
                f"invalid agent start input: {self._bad_input}", type=INVALID_AGENT_INPUT, non_retryable=True
            )
        s = self._state
        if s.state == AgentState.INITIALIZING:
            await self._initialize()
            if s.has_detector:
                await self._sync_detector(active=True)
        self._publish_state()
        self._health_watch = asyncio.create_task(self._publish_health())
        while True:
            await self._wait_for_work()
            if self._detector_stale:
                self._detector_stale = False
                await self._sync_detector(active=True)
            self._release_incidents()
            if self._has_work():
                async with self._step_lock:
                    await self._decide_batch()
            elif s.stop_request is not None:
                break
            if self._run_is_full():  # also while draining for a stop: the request is carried
                await workflow.wait_condition(
                    lambda: (
                        workflow.all_handlers_finished() and self._audit.is_drained() and not self._confirming
                    )
                )
                workflow.continue_as_new(
                    AgentWorkflowInput(config=s.config, carried=s),
                    initial_versioning_behavior=workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE,
                )
        return await self._stop()

    async def _initialize(self) -> None:
        s = self._state
        s.started_at = workflow.now()
        proposal = ConfigProposal(
            config=s.config, author=self._started_by or "agent start", comment="config at start"
        )
        registered, info = False, None
        if s.config.runtime.local_decisions:
            registered, info = await self._start_here(proposal)
        pickup = timedelta(seconds=s.config.runtime.worker_pickup_seconds)
        try:
            if not registered:
                # Every running config is a stored version: registering the one this agent
                # starts with gives it a version number (the same one if nothing changed).
                stored = await workflow.execute_activity_method(
                    ConfigActivities.register_config,
                    proposal,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=CONFIG_RETRY,
                )
                if stored is not None:
                    s.config = stored.config
            if info is None:
                info = await workflow.execute_activity_method(
                    AgentActivities.initialize_agent,
                    s.config,
                    task_queue=self._hooks_queue(),
                    # No worker serving the type picks it up: the agent fails, saying so.
                    schedule_to_start_timeout=pickup,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=INIT_RETRY,
                )
        except ActivityError as err:
            s.state = AgentState.FAILED
            s.failure = cause_message(err)
            if isinstance(err.cause, ActivityTimeout) and err.cause.type == TimeoutType.SCHEDULE_TO_START:
                s.failure = (
                    f"no worker serves agent type {s.config.type!r} (nothing polled task queue "
                    f"{self._hooks_queue()} for {pickup.total_seconds():g}s); start a worker that loads "
                    "it (worker.py --agent-module MODULE, or AIOPS_AGENT_MODULES)"
                )
            self._publish_state()
            workflow.logger.error("agent %s failed to initialize: %s", s.config.id, s.failure)
            raise ApplicationError(
                f"agent {s.config.id} failed to initialize: {s.failure}; "
                f"{len(s.queue)} queued event(s) are in this failure's details",
                [e.model_dump(mode="json") for e in s.queue],
                type=AGENT_INITIALIZATION_FAILED,
                non_retryable=True,
            ) from err
        s.subscribed_event_types = info.subscribed_event_types
        s.has_detector = info.has_detector
        s.has_plan = info.has_plan
        self._audit_log_is(info.audit_log)
        s.state = AgentState.PAUSED if s.pause_requested else AgentState.RUNNING
        self._record_lifecycle("started", actor=self._started_by, config_version=s.config.version)

    async def _start_here(self, proposal: ConfigProposal) -> tuple[bool, AgentInitialized | None]:
        """Register and initialize in one local activity on this worker, where it can: whatever it
        leaves undone (another worker pool has the type, a database or hook error) is done after
        by the usual activities, with their retries. Saves two activity round trips per start."""
        try:
            started = await workflow.execute_local_activity_method(
                AgentActivities.start_agent,
                StartAgentCall(config=proposal.config, proposal=proposal),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            workflow.logger.info("agent %s starts the usual way: %s", proposal.config.id, cause_message(err))
            return False, None
        if started.problem:
            workflow.logger.info("agent %s: %s; done the usual way", proposal.config.id, started.problem)
        if started.stored is not None:
            self._state.config = started.stored.config
        return started.registered, started.initialized

    async def _wait_for_work(self) -> None:
        """Until there is something to do, or the next incident's window passes."""
        s = self._state

        deadline = self._intake.incidents.next_deadline()

        def ready() -> bool:
            return (
                self._has_work()
                or s.stop_request is not None
                or self._run_is_full()
                or self._detector_stale
                or self._intake.incidents.next_deadline() != deadline  # an incident opened: re-time
            )

        if deadline is None:
            await workflow.wait_condition(ready)
            return
        wait = deadline - workflow.now()
        if wait > timedelta(0):
            try:
                await workflow.wait_condition(ready, timeout=wait)
            except TimeoutError:
                pass

    def _release_incidents(self) -> None:
        """Hand the incidents whose window passed to the queue (all of them when draining to stop)."""
        s = self._state
        draining = s.stop_request is not None and s.stop_request.drain
        for event in self._intake.release_incidents(workflow.now(), all_now=draining):
            self._count("incidents")
            workflow.logger.info("incident %s goes to a decision", event.correlation_id)

    def _has_work(self) -> bool:
        s = self._state
        draining = s.stop_request is not None and s.stop_request.drain
        room = len(s.pending_actions) < MAX_PENDING_ACTIONS  # bounded state: wait for some to finish
        return bool(s.queue) and (s.state == AgentState.RUNNING or draining) and room

    def _run_is_full(self, suggested: bool = True) -> bool:
        """Time to continue as new: the server suggests it, or this run took its share."""
        return (
            (suggested and workflow.info().is_continue_as_new_suggested())
            or self._events_this_run >= self._state.config.runtime.max_events_per_run
            or self._signals_this_run >= SIGNALS_PER_RUN_CEILING
            or self._children_this_run >= self._state.config.runtime.max_actions_per_run
            or self._upgrade_requested
        )

    async def _decide_batch(self) -> None:
        batch, filtered = self._intake.next_batch()
        result = DecideEventsResult()
        # The decision writes the batch's audit rows itself: then an event costs no audit activity.
        if batch:
            try:
                result = await self._decide(batch, filtered)
            except ActivityError as err:
                await self._batch_failed(batch, cause_message(err))
                return
            self._audit_log_is(result.audit_log)
        # The result's own form decides how it is read (replay reads what was recorded).
        settled = self._intake.settle(batch, filtered, every_decision(batch, result))
        self._count("filtered", len(settled.filtered))
        # No decision ran, or its write failed: the outbox writes them (if there is an audit log
        # at all: without one no row is even built).
        if not result.audited and self._audit.has_sink:
            for event in settled.filtered:
                self._audit.event(event, EventDecision(event_id=event.id), filtered=True)
            for event, decision in settled.audited:
                self._audit.event(event, decision)
        for message, event_id in settled.notes:
            self._note_error(message, event_id)
        self._count("processed", settled.processed)
        if settled.proposals:
            await asyncio.gather(*(self._start_action(e, d) for e, d in settled.proposals))
        if settled.retry_after_seconds is not None:
            await workflow.sleep(timedelta(seconds=settled.retry_after_seconds))

    def _audit_log_is(self, available: bool) -> None:
        """What the worker said of its audit log: without one, rows are not queued at all."""
        self._state.audit_log = available
        self._audit.sink_available(available)

    async def _batch_failed(self, batch: list[SystemEvent], reason: str) -> None:
        failure = self._intake.batch_failed(batch, reason)
        self._note_error(failure.note)
        if failure.gave_up is not None:
            event = failure.gave_up
            self._count("processed")
            self._note_error(failure.gave_up_note, event.id)
            self._audit.event(event, EventDecision(event_id=event.id, error=reason, retryable=False))
            return
        await workflow.sleep(timedelta(seconds=failure.retry_after_seconds))

    async def _decide(self, batch: list[SystemEvent], filtered: list[SystemEvent]) -> DecideEventsResult:
        """One activity call decides the whole batch (local by default: fast, few history events)."""
        s = self._state
        runtime = s.config.runtime
        audit = None
        if self._audit.has_sink:
            tried = s.decide_attempts
            attempts = {e.id: tried[e.id] for e in [*batch, *filtered] if e.id in tried}
            audit = DecisionAudit(run_id=workflow.info().run_id, attempts=attempts, filtered=filtered)
        request = DecideEventsInput(config=s.config, events=batch, audit=audit, compact=True)
        timeout = timedelta(seconds=runtime.decision_timeout_seconds)
        if runtime.local_decisions and not self._task_is_long():
            decided = await workflow.execute_local_activity_method(
                AgentActivities.decide_events,
                request,
                start_to_close_timeout=timeout,
                retry_policy=DECIDE_RETRY,
            )
            if not decided.unserved:
                return decided
            # This worker lacks the agent's type (another pool's agent): decide where the type is.
        return await workflow.execute_activity_method(
            AgentActivities.decide_events,
            request,
            task_queue=self._hooks_queue(),
            start_to_close_timeout=timeout,
            # A worker that dies mid-decision is noticed within this, not after the whole timeout.
            heartbeat_timeout=DECIDE_HEARTBEAT if timeout > DECIDE_HEARTBEAT * 3 else None,
            retry_policy=DECIDE_RETRY,
        )

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

    def _hooks_queue(self) -> str:
        """The task queue of this agent type's hooks, which only workers that have the type poll."""
        return hooks_task_queue(workflow.info().task_queue, self._state.config.type)

    async def _start_action(self, event: SystemEvent, decision: EventDecision) -> None:
        assert decision.action is not None
        if await launch_action(self._state, event, decision.action):
            self._children_this_run += 1

    async def _stop(self) -> AgentRunSummary:
        s = self._state
        was_paused = s.state == AgentState.PAUSED
        s.state = AgentState.STOPPING
        self._publish_state()
        assert s.stop_request is not None
        if not s.stop_request.drain:
            # Not draining: actions that have not started executing end as rejected.
            abort = AbortRequest(reason=s.stop_request.reason or "the agent stopped")
            await self._tell_actions(ActionWorkflow.abort, abort)
        elif was_paused:
            # Draining: approved actions held by the pause may go ahead, nobody could release them later.
            s.hold_epoch += 1
            await self._tell_actions(ActionWorkflow.release, HoldRequest(epoch=s.hold_epoch))
        if s.has_detector:
            await self._sync_detector(active=False)
        try:
            await workflow.execute_activity_method(
                AgentActivities.stop_agent,
                s.config,
                task_queue=self._hooks_queue(),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            self._note_error(f"stop hook failed: {cause_message(err)}")
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._confirming)
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

    # Events are decoded by hand (``Any``): a malformed one is rejected, counted and audited,
    # never a failed workflow task. Typed messages that fail to decode are dropped by the SDK
    # with a warning in the worker log; every one of them is optional, so a bare signal works.

    @workflow.signal(name=SUBMIT_EVENT)
    def submit_event(self, payload: Any = None) -> None:
        """One event as JSON; a malformed payload is rejected and counted, never fatal."""
        self._signals_this_run += 1
        self._take_all([payload])

    @workflow.signal(name=SUBMIT_EVENTS)
    def submit_events(self, payload: Any = None) -> None:
        """A batch of events in one signal (a list, or ``{"events": [...]}``)."""
        self._signals_this_run += 1
        try:
            items = events_of(payload)
        except EventRejected as err:
            self._reject(str(err))
            return
        self._take_all(items)

    @workflow.update  # named INTAKE by its method name
    def intake(self, request: IntakeRequest) -> IntakeAnswer:
        """Events with an answer for each: accepted, duplicate, grouped, or rejected with the reason.

        The client's path (the signals stay for the Web UI and the raw CLI): a sender learns
        whether each event was taken. The validator refuses the whole batch, before anything
        enters history, when the agent cannot take it now (see ``_validate_intake``).
        """
        self._signals_this_run += 1
        answers = self._take_all(request.events, keep_accepted=not request.compact)
        return IntakeAnswer(answers=answers, queue_length=len(self._state.queue), compact=request.compact)

    @intake.validator
    def _validate_intake(self, request: IntakeRequest) -> None:
        s = self._state
        refusal, retryable = None, True
        room = max(0, s.config.runtime.max_queue - len(s.queue))
        if s.state in (AgentState.STOPPING, AgentState.STOPPED, AgentState.FAILED) or s.stop_request:
            refusal, retryable = (
                f"agent {s.config.id} is {s.state.value}, or stopping; it takes no events",
                False,
            )
        elif self._run_is_full(suggested=False):
            # Not the server's suggestion: it can first show in the task that runs this validator,
            # which is dropped with a refused update, so the run would never continue as new and
            # would refuse for ever. Taken, the events are carried; the main loop then continues
            # as new in a task the server keeps.
            refusal = "the agent is about to continue as new; send again in a moment"
        elif len(s.queue) + len(request.events) > s.config.runtime.max_queue:
            refusal = (
                f"the agent's queue is full ({len(s.queue)} of {s.config.runtime.max_queue} events waiting); "
                "send again later"
            )
        elif self._intake.queue_bytes > MAX_QUEUE_BYTES * 0.9:
            refusal = (
                f"the agent's queue is full ({self._intake.queue_bytes} bytes waiting); send again later"
            )
        if refusal is not None:
            details = {"retryable": retryable, "room": room}  # room: events that would fit now
            raise ApplicationError(refusal, details, type=INTAKE_REFUSED, non_retryable=True)

    @workflow.signal(name=PAUSE)
    async def pause(self, command: AgentCommand | None = None) -> None:
        """Stop taking events off the queue and hold approved actions not yet started."""
        self._signals_this_run += 1
        command = command or AgentCommand()
        verdict = self._authorize(AgentVerb.PAUSE, command, None, "signal")
        if verdict.reason is None:
            await self._set_paused(True, verdict)

    @workflow.signal(name=RESUME)
    async def resume(self, command: AgentCommand | None = None) -> None:
        """Take events again and release held actions."""
        self._signals_this_run += 1
        command = command or AgentCommand()
        verdict = self._authorize(AgentVerb.RESUME, command, None, "signal")
        if verdict.reason is None:
            await self._set_paused(False, verdict)

    async def _set_paused(self, paused: bool, verdict: CommandVerdict) -> bool:
        s = self._state
        if s.state == AgentState.INITIALIZING:
            s.pause_requested = paused  # applied once initialization ends
            return True
        if s.state != (AgentState.RUNNING if paused else AgentState.PAUSED):
            return False
        s.state = AgentState.PAUSED if paused else AgentState.RUNNING
        s.hold_epoch += 1
        self._publish_state()
        self._record_lifecycle("paused" if paused else "resumed", actor=verdict.actor, **self._proof(verdict))
        signal = ActionWorkflow.hold if paused else ActionWorkflow.release
        await self._tell_actions(signal, HoldRequest(epoch=s.hold_epoch))
        return True

    @workflow.signal(name=RESET_CIRCUIT_BREAKER)
    def reset_circuit_breaker(self, command: AgentCommand | None = None) -> None:
        """A person closes the circuit breaker; automatic execution may resume."""
        self._signals_this_run += 1
        command = command or AgentCommand()
        verdict = self._authorize(AgentVerb.RESET_CIRCUIT_BREAKER, command, None, "signal")
        if verdict.reason is None:
            self._reset_breaker(verdict)

    def _reset_breaker(self, verdict: CommandVerdict) -> bool:
        who = verdict.actor or "unknown"
        workflow.logger.info("circuit breaker of %s reset by %s", self._state.config.id, who)
        was_open = self._state.circuit_open
        self._record_lifecycle("circuit_breaker_reset", actor=who, was_open=was_open, **self._proof(verdict))
        self._state.circuit_open = False
        self._state.consecutive_failures = 0
        return was_open

    @workflow.signal(name=STOP)
    def stop(self, request: StopRequest | None = None) -> None:
        """Stop the agent: drain the queue first (default), or abort actions not yet executing."""
        self._signals_this_run += 1
        request = request or StopRequest()
        verdict = self._authorize(AgentVerb.STOP, request, stop_digest(request.drain), "signal")
        if verdict.reason is None:
            self._request_stop(request, verdict)

    def _request_stop(self, request: StopRequest, verdict: CommandVerdict) -> bool:
        if self._state.stop_request is not None:
            return False
        self._state.stop_request = request.model_copy(update={"actor": verdict.actor})
        self._record_lifecycle(
            "stop_requested",
            actor=verdict.actor,
            drain=request.drain,
            reason=request.reason,
            **self._proof(verdict),
        )
        return True

    @workflow.signal(name=UPGRADE)
    def upgrade(self, command: AgentCommand | None = None) -> None:
        """Continue as new at the next safe point, on the code the workers run now."""
        self._signals_this_run += 1
        command = command or AgentCommand()
        verdict = self._authorize(AgentVerb.UPGRADE, command, None, "signal")
        if verdict.reason is None:
            self._request_upgrade(verdict)

    def _request_upgrade(self, verdict: CommandVerdict) -> bool:
        """Continue as new as soon as the run is at a safe point: the batch in hand decided, every
        handler finished and the audit drained (the same path as a full run), state and queue
        carried. A new run takes the workflow code of today's build, so this moves an agent to new
        code without waiting for its run to fill up (see docs/deploy.md, versioning)."""
        s = self._state
        if self._upgrade_requested or s.stop_request is not None or s.state == AgentState.FAILED:
            return False
        self._upgrade_requested = True
        self._record_lifecycle("upgrade_requested", actor=verdict.actor, **self._proof(verdict))
        return True

    @workflow.update  # named COMMAND by its method name
    async def command(self, request: CommandRequest) -> CommandApplied:
        """Pause, resume, stop, reset the circuit breaker or upgrade, and learn what happened: a refusal
        (not signed, not allowed, forged, expired, replayed) fails the update with the reason,
        after this workflow has recorded and audited it."""
        self._signals_this_run += 1
        digest = stop_digest(request.drain) if request.verb == AgentVerb.STOP else None
        verdict = self._authorize(request.verb, request, digest, "update")
        if verdict.reason is not None:
            raise ApplicationError(
                verdict.reason, {"audited": True}, type=COMMAND_REFUSED, non_retryable=True
            )
        if request.verb in (AgentVerb.PAUSE, AgentVerb.RESUME):
            changed = await self._set_paused(request.verb == AgentVerb.PAUSE, verdict)
        elif request.verb == AgentVerb.STOP:
            stop = StopRequest(reason=request.reason, drain=request.drain, actor=verdict.actor)
            changed = self._request_stop(stop, verdict)
        elif request.verb == AgentVerb.UPGRADE:
            changed = self._request_upgrade(verdict)
        else:
            changed = self._reset_breaker(verdict)
        return CommandApplied(
            verb=request.verb, actor=verdict.actor, authenticated=verdict.authenticated, changed=changed
        )

    def _authorize(
        self, verb: AgentVerb, command: OperatorMessage, digest: str | None, channel: str
    ) -> CommandVerdict:
        """Whether this command may change the agent; a refusal is recorded and audited here."""
        s = self._state
        now = workflow.now()
        forget_expired(s.command_tokens, now)
        verdict = check_command(
            s.config, verb, command.actor, command.credential, digest, workflow.info().workflow_id, now,
            s.command_tokens,
        )  # fmt: skip
        if verdict.reason is not None:
            self._note_error(
                f"refused {verb.value} ({channel}) from {verdict.actor or 'anonymous'}: {verdict.reason}"
            )
            self._record_lifecycle(
                "command_refused",
                actor=verdict.actor,
                verb=verb.value,
                channel=channel,
                reason=verdict.reason,
            )
        elif verdict.token_id is not None and verdict.token_expires is not None:
            s.command_tokens[verdict.token_id] = verdict.token_expires
        return verdict

    def _authorize_config_change(self, request: ReconfigureRequest) -> CommandVerdict:
        """A person's config change needs the reconfigure role; a worker relaying a version the
        config store already holds (``version`` alone) only brings the agent up to date with
        the store, which is the authority, so it needs no token."""
        if request.version is not None:
            return CommandVerdict(actor=request.actor or "config store")
        self._signals_this_run += 1  # each audited refusal has its own key
        return self._authorize(AgentVerb.RECONFIGURE, request, reconfigure_digest(request), "update")

    def _proof(self, verdict: CommandVerdict) -> dict[str, Any]:
        """How a command was proven, for its audit row."""
        proof: dict[str, Any] = {"authenticated": verdict.authenticated}
        if verdict.token_id is not None:
            proof["token_id"] = verdict.token_id
        if verdict.issuer is not None:
            proof["issuer"] = verdict.issuer
        return proof

    @workflow.query(name=HOLD_STATE)
    def hold_state(self) -> HoldState:
        """What this agent's actions confirm a hold, release or abort signal against."""
        s = self._state
        stop = s.stop_request
        aborting = (
            stop is not None and not stop.drain and s.state in (AgentState.STOPPING, AgentState.STOPPED)
        )
        return HoldState(
            paused=s.state == AgentState.PAUSED,
            hold_epoch=s.hold_epoch,
            abort_reason=(stop.reason or "the agent stopped") if aborting and stop is not None else None,
        )

    @workflow.signal(name=ACTION_FINISHED)
    def action_finished(self, payload: Any = None) -> None:
        """An action workflow reports a status change or its end (sent by action workflows only)."""
        self._signals_this_run += 1
        try:
            outcome = ActionOutcome.model_validate(payload)
        except ValidationError:
            workflow.logger.warning("ignored a malformed %s signal", ACTION_FINISHED)
            return
        if outcome.status.is_final:
            if outcome.action_id in self._state.pending_actions and outcome.action_id not in self._confirming:
                self._confirming[outcome.action_id] = asyncio.create_task(self._confirm_outcome(outcome))
            return
        record_outcome(self._state, outcome)

    async def _confirm_outcome(self, claimed: ActionOutcome) -> None:
        """Count an action's end as the action itself records it, not as a signal claims it:
        anyone can send ``action_finished``, and successes reset the circuit breaker's count."""
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
            self._confirming.pop(claimed.action_id, None)
        if seen is not None and seen.status.is_final:
            record_outcome(self._state, seen)
            return
        self._note_error(
            f"refused action_finished for {claimed.action_id} ({claimed.status.value}): {reason}"
        )
        self._record_lifecycle(
            "command_refused",
            verb="action_finished",
            channel="signal",
            action_id=claimed.action_id,
            reason=reason,
        )

    # ----- configuration ---------------------------------------------------------

    @workflow.update  # named RECONFIGURE by its method name (a name= here loses the result type)
    async def reconfigure(self, payload: Any = None) -> ConfigApplied:
        """Apply a new config, a rollback, or a stored version (a ``ReconfigureRequest``), between
        two batches. Decoded by hand so that a refusal names every problem."""
        return await self._config.apply(payload)

    @reconfigure.validator
    def _validate_reconfigure(self, payload: Any = None) -> None:
        self._config.validate(payload)

    def _config_switched(self, new: AgentConfig) -> None:
        self._intake.config_switched()
        self._detector_stale = self._state.has_detector
        self._publish_state()

    async def _sync_detector(self, active: bool) -> None:
        """Create, update or remove the agent's detector schedule; a failure is noted, not fatal."""
        try:
            await workflow.execute_activity_method(
                DetectorActivities.sync_detector,
                DetectorSchedule(
                    config=self._state.config,
                    agent_workflow_id=workflow.info().workflow_id,
                    task_queue=workflow.info().task_queue,
                    active=active,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
            )
        except ActivityError as err:
            self._note_error(f"detector schedule not updated: {cause_message(err)}")

    @workflow.query(name=STATUS)
    def status(self) -> AgentStatus:
        return status_of(self._state)

    @workflow.query(name=PENDING_ACTIONS)
    def pending_actions(self) -> list[PendingAction]:
        return list(self._state.pending_actions.values())

    # ----- helpers -------------------------------------------------------------

    def _take_all(self, payloads: list[Any], keep_accepted: bool = True) -> list[EventAnswer]:
        """Admit each payload and answer for each (without ``keep_accepted``: only for those not
        accepted, with their index; see ``IntakeRequest.compact``). The metrics are counted once
        per message, not once per event (a storm's batches of hundreds made that a tenth of the
        intake's cost)."""
        now, answers = workflow.now(), []
        received = grouped = duplicates = 0
        for index, payload in enumerate(payloads):
            self._events_this_run += 1
            try:
                taken = self._intake.take(payload, now)
            except EventRejected as err:
                self._reject(str(err))
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
                joined = EventDecision(event_id=taken.event.id)
                self._audit.event(taken.event, joined, incident=taken.incident)
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
        self._count("received", received)
        self._count("grouped", grouped)
        self._count("deduplicated", duplicates)
        if duplicates:
            workflow.logger.debug("%d duplicate event(s) ignored", duplicates)
        return answers

    async def _tell_actions(self, signal: Any, request: HoldRequest | AbortRequest) -> None:
        async def tell(action_id: str) -> None:
            try:
                await workflow.get_external_workflow_handle(action_id).signal(signal, request)
            except Exception as err:  # a finished action needs nothing
                workflow.logger.debug("could not signal %s: %s", action_id, err)

        action_ids = list(self._state.pending_actions)
        for start in range(0, len(action_ids), SIGNALS_PER_STEP):
            await asyncio.gather(*(tell(a) for a in action_ids[start : start + SIGNALS_PER_STEP]))

    def _record_lifecycle(self, what: str, actor: str = "", **detail: Any) -> None:
        sequence = self._state.counters.events_received + self._signals_this_run
        self._audit.lifecycle(what, sequence, actor=actor, **detail)

    def _count(self, outcome: str, n: int = 1) -> None:
        metrics.count_events(self._state.config.type, self._state.config.id, outcome, n)

    def _reject(self, reason: str) -> None:
        self._state.counters.events_rejected += 1
        self._count("rejected")
        self._audit.rejection(reason, self._signals_this_run)
        record_problem(self._state.recent_rejections, RecentProblem(at=workflow.now(), message=reason))
        workflow.logger.warning("rejected event payload: %s", reason)

    def _note_error(self, message: str, event_id: str | None = None) -> None:
        record_problem(
            self._state.recent_errors, RecentProblem(at=workflow.now(), message=message, event_id=event_id)
        )
        workflow.logger.warning("agent %s: %s", self._state.config.id, message)

    def _publish_state(self) -> None:
        s = self._state
        workflow.upsert_search_attributes(
            [
                sa.AGENT_ID.value_set(s.config.id),
                sa.AGENT_TYPE.value_set(s.config.type),
                sa.AGENT_STATE.value_set(s.state.value),
                sa.HEALTH.value_set(health_summary(s)),
            ]
        )
        workflow.set_current_details(
            f"**{s.config.name}** ({s.config.type}) is *{s.state.value}*; config version {s.config.version}"
        )

    async def _publish_health(self) -> None:
        """Keep ``AiopsHealth`` in line with the state (aiops/contracts/health_summary.py), upserting only
        when the summary changes: a healthy agent publishes ``ok`` once, with its state, and no more."""

        def changed() -> bool:
            return health_summary(self._state) != workflow.info().typed_search_attributes.get(sa.HEALTH)

        while True:
            await workflow.wait_condition(changed)
            workflow.upsert_search_attributes([sa.HEALTH.value_set(health_summary(self._state))])
