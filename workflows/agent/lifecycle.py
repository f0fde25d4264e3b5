"""An agent run's life around its batches: the start input, initializing (registering the config,
the type's initialize hook, the detector schedule), waiting for work, continuing as new when the
run is full, and stopping (draining or aborting, the stop hook).

Before the server's history limits a run continues as new, carrying the whole state, queue and
dedup window included, once every handler has finished and the audit outbox is drained.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.agent_activities import AgentActivities
    from activities.config_activities import ConfigActivities
    from activities.detector_activities import DetectorActivities
    from activities.overflow_activities import OverflowActivities
    from agents.config_diff import same_but_version
    from aiops.contracts.activities import (
        AgentInitialized,
        ConfigProposal,
        DetectorSchedule,
        StartAgentCall,
    )
    from aiops.contracts.agent import (
        AGENT_INITIALIZATION_FAILED,
        MAX_EVENTS_PER_INTAKE,
        AgentRunState,
        AgentRunSummary,
        AgentState,
        AgentWorkflowInput,
    )
    from aiops.contracts.config import AgentConfig
    from aiops.contracts.errors import describe_validation_error
    from aiops.contracts.overflow import SpillRequest, first_batch
    from aiops.contracts.shared_settings import share_settings
    from workflows.agent.carried import fit_carried
    from workflows.agent.health import publish_state
    from workflows.agent.raw import NO_PAYLOAD, UndecodablePayload, decoded
    from workflows.agent.reconfigure import CONFIG_RETRY, RELOAD_RETRY
    from workflows.agent.state import MAX_PENDING_ACTIONS
    from workflows.failures import cause_message
    from workflows.local_arguments import compact

if TYPE_CHECKING:
    from workflows.agent.actions import Actions
    from workflows.agent.context import AgentContext

# Long enough to ride out a short outage of whatever the agent initializes against.
INIT_RETRY = RELOAD_RETRY  # initializing and reloading ride out the same short outages


def parse_input(payload: Any) -> tuple[AgentWorkflowInput, str | None]:
    """The start input, or a placeholder and the problems with it. Decoded here, not by the SDK:
    a start with an invalid config (say from the `temporal` CLI) then fails the workflow with the
    problems named, instead of failing every workflow task for ever (and echoing the input in
    worker logs).

    The workflow takes the payload undecoded (a ``RawValue``, see workflow.py): decoded by the SDK
    as ``Any``, it left a ``TypeAdapter(Any)`` and its validator in every run's payload converter
    (about 1.5 KB of a cached agent's memory) for a payload read once. Plain data (the unit tests)
    is taken as it is."""
    if isinstance(payload, RawValue):
        raw = payload
        try:
            payload = decoded(raw)
        except UndecodablePayload as err:
            return _placeholder(), str(err)
        finally:
            # The SDK keeps the run's arguments for the run's whole life, and this payload is part
            # of the run's first activation, which it would keep whole (a frozen dataclass: hence
            # the object.__setattr__). A replay reads the payload anew.
            object.__setattr__(raw, "payload", NO_PAYLOAD.payload)
    try:
        input = AgentWorkflowInput.model_validate(payload)
    except ValidationError as err:
        return _placeholder(), describe_validation_error(err)
    return input, None


def _placeholder() -> AgentWorkflowInput:
    return AgentWorkflowInput(config=AgentConfig(id="invalid-input", name="invalid input", type="none"))


def run_state(input: AgentWorkflowInput) -> AgentRunState:
    """A new agent's state, or the one the previous run carried (one run later)."""
    if input.carried is None:
        state = AgentRunState(config=input.config)
    else:
        state = input.carried
        state.run_number += 1
    share_settings(state.config)  # one copy per worker of the settings agents have alike
    return state


def adopt_stored(own: AgentConfig, stored: AgentConfig) -> AgentConfig:
    """The config an agent runs after registering ``own`` and being answered ``stored``: ``own``
    renumbered when the version is all the store changed (its settings stay the ones it shares
    with the worker's other agents), else ``stored`` with its settings shared. Adopting the
    stored copy as it came kept a second decoded config, settings and all, per idle agent."""
    if same_but_version(own, stored):
        return own.model_copy(update={"version": stored.version})
    return share_settings(stored)


class Lifecycle:
    def __init__(self, ctx: AgentContext, actions: Actions) -> None:
        self._ctx = ctx
        self._actions = actions
        self._postponed = False  # continue-as-new waited for the carried state to fit (said once)

    # ----- starting -------------------------------------------------------------

    async def initialize(self) -> None:
        s = self._ctx.state
        s.started_at = workflow.now()
        proposal = ConfigProposal(
            config=s.config, author=self._ctx.started_by or "agent start", comment="config at start"
        )
        # The started row's number, taken once: the start's local activity writes the row where
        # it can, else the outbox under the same key (a write that landed late is not doubled).
        sequence = self._ctx.lifecycle_sequence()
        registered, info, audited = False, None, False
        if s.config.runtime.local_decisions:
            registered, info, audited = await self._start_here(proposal, sequence)
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
                    s.config = adopt_stored(s.config, stored.config)
            if info is None:
                info = await workflow.execute_activity_method(
                    AgentActivities.initialize_agent,
                    s.config,
                    task_queue=self._ctx.hooks_queue(),
                    # No worker serving the type picks it up: the agent fails, saying so.
                    schedule_to_start_timeout=pickup,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=INIT_RETRY,
                )
        except ActivityError as err:
            raise self._failed(err, pickup) from err
        s.subscribed_event_types = info.subscribed_event_types
        s.has_detector = info.has_detector
        s.has_plan = info.has_plan
        self._ctx.audit_log_is(info.audit_log)
        s.state = AgentState.PAUSED if s.pause_requested else AgentState.RUNNING
        if not audited:  # else the start's local activity wrote it
            self._ctx.record_lifecycle(
                "started", actor=self._ctx.started_by, sequence=sequence, config_version=s.config.version
            )

    def _failed(self, err: ActivityError, pickup: timedelta) -> ApplicationError:
        """The agent failed to initialize: say why, with the queued events in the failure's details."""
        s = self._ctx.state
        s.state = AgentState.FAILED
        s.failure = cause_message(err)
        if isinstance(err.cause, ActivityTimeout) and err.cause.type == TimeoutType.SCHEDULE_TO_START:
            s.failure = (
                f"no worker serves agent type {s.config.type!r} (nothing polled task queue "
                f"{self._ctx.hooks_queue()} for {pickup.total_seconds():g}s); start a worker that loads "
                "it (worker.py --agent-module MODULE, or AIOPS_AGENT_MODULES)"
            )
        publish_state(s)
        workflow.logger.error("agent %s failed to initialize: %s", s.config.id, s.failure)
        return ApplicationError(
            f"agent {s.config.id} failed to initialize: {s.failure}; "
            f"{len(s.queue)} queued event(s) are in this failure's details",
            [e.model_dump(mode="json") for e in s.queue],
            type=AGENT_INITIALIZATION_FAILED,
            non_retryable=True,
        )

    async def _start_here(
        self, proposal: ConfigProposal, sequence: int
    ) -> tuple[bool, AgentInitialized | None, bool]:
        """Register and initialize in one local activity on this worker, where it can: whatever it
        leaves undone (another worker pool has the type, a database or hook error) is done after
        by the usual activities, with their retries. Saves two activity round trips per start,
        and, when it did it all, writes the ``started`` audit row too (the third value: written).
        Which of these happen is read from the local activity's recorded answer, so a history
        whose answer has no ``audited`` replays with the ``record_audit`` activity it recorded."""
        call = StartAgentCall(
            config=proposal.config,
            proposal=proposal,
            started_sequence=sequence,
            started_by=self._ctx.started_by,
        )
        try:
            started = await workflow.execute_local_activity_method(
                AgentActivities.start_agent,
                args=[compact(call)],
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            workflow.logger.info("agent %s starts the usual way: %s", proposal.config.id, cause_message(err))
            return False, None, False
        if started.problem:
            workflow.logger.info("agent %s: %s; done the usual way", proposal.config.id, started.problem)
        s = self._ctx.state
        if started.stored is not None:
            s.config = adopt_stored(s.config, started.stored.config)
        elif started.stored_version is not None:
            s.config = s.config.model_copy(update={"version": started.stored_version})
        return started.registered, started.initialized, started.audited and started.initialized is not None

    async def sync_detector(self, active: bool) -> None:
        """Create, update or remove the agent's detector schedule; a failure is noted, not fatal."""
        try:
            await workflow.execute_activity_method(
                DetectorActivities.sync_detector,
                DetectorSchedule(
                    config=self._ctx.state.config,
                    agent_workflow_id=workflow.info().workflow_id,
                    task_queue=workflow.info().task_queue,
                    active=active,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
            )
        except ActivityError as err:
            self._ctx.note_error(f"detector schedule not updated: {cause_message(err)}")

    # ----- between batches ----------------------------------------------------------

    async def wait_for_work(self) -> None:
        """Until there is something to do, or the next incident's window passes."""
        ctx, s = self._ctx, self._ctx.state
        deadline = ctx.intake.incidents.next_deadline()

        def ready() -> bool:
            return (
                self.has_work()
                or bool(ctx.spill)
                or s.stop_request is not None
                or ctx.run_is_full()
                or ctx.detector_stale
                or ctx.intake.incidents.next_deadline() != deadline  # an incident opened: re-time
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

    async def spill(self, batches: int | None = None) -> None:
        """Hand the signalled events the full queue could not take to this agent's overflow
        workflow (signal-with-start), in batches; nothing is refused after it reached history.
        ``batches``: at most that many (the main loop spills one between two decided batches: a
        storm refills the spill faster than it empties, and deciding must go on meanwhile)."""
        ctx = self._ctx
        while ctx.spill and batches != 0:
            batches = None if batches is None else batches - 1
            n = first_batch(ctx.spill, MAX_EVENTS_PER_INTAKE)
            events, ctx.spill = ctx.spill[:n], ctx.spill[n:]
            await workflow.execute_activity_method(
                OverflowActivities.spill_events,
                SpillRequest(
                    agent_id=ctx.state.config.id, task_queue=workflow.info().task_queue, events=events
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),  # until it lands
            )
            ctx.record_lifecycle("events_spilled", count=len(events))

    def release_incidents(self) -> None:
        """Hand the incidents whose window passed to the queue (all of them when draining to stop)."""
        s = self._ctx.state
        draining = s.stop_request is not None and s.stop_request.drain
        for event in self._ctx.intake.release_incidents(workflow.now(), all_now=draining):
            self._ctx.count("incidents")
            workflow.logger.info("incident %s goes to a decision", event.correlation_id)

    def has_work(self) -> bool:
        s = self._ctx.state
        draining = s.stop_request is not None and s.stop_request.drain
        room = len(s.pending_actions) < MAX_PENDING_ACTIONS  # bounded state: wait for some to finish
        return bool(s.queue) and (s.state == AgentState.RUNNING or draining) and room

    # ----- ending a run -------------------------------------------------------------

    async def continue_as_new(self) -> None:
        """Once every handler has finished and the audit is drained: the next run, on today's build."""
        ctx = self._ctx
        while True:  # signals that come in while spilling are spilled too before the run ends
            await self.spill()
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() and ctx.audit.is_drained() and not ctx.confirming
            )
            if not ctx.spill:
                break
        measured, shed = fit_carried(ctx.state)
        for said in shed:
            ctx.note_error(f"before continue-as-new: {said}")
        if not measured.fits:  # nothing else is safe to shed: the next batches shrink the queue
            if not self._postponed:
                ctx.note_error(f"continue-as-new postponed: {measured.reason}")
            self._postponed = True
            return
        workflow.continue_as_new(
            AgentWorkflowInput(config=ctx.state.config, carried=ctx.state),
            initial_versioning_behavior=self.next_run_versioning(),
        )

    @staticmethod
    def next_run_versioning() -> workflow.ContinueAsNewVersioningBehavior | None:
        """Under Worker Versioning, the next run starts on the current build (this one is pinned);
        an unversioned worker may not ask for a versioning behavior at all."""
        if workflow.info().get_current_deployment_version() is None:
            return None
        return workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE

    async def stop(self) -> AgentRunSummary:
        ctx, s = self._ctx, self._ctx.state
        was_paused = s.state == AgentState.PAUSED
        s.state = AgentState.STOPPING
        publish_state(s)
        assert s.stop_request is not None
        if not s.stop_request.drain:
            # Not draining: actions that have not started executing end as rejected.
            await self._actions.abort_all(s.stop_request.reason or "the agent stopped")
        elif was_paused:
            # Draining: approved actions held by the pause may go ahead, nobody could release them later.
            s.hold_epoch += 1
            await self._actions.release_all(s.hold_epoch)
        if s.has_detector:
            await self.sync_detector(active=False)
        try:
            await workflow.execute_activity_method(
                AgentActivities.stop_agent,
                s.config,
                task_queue=ctx.hooks_queue(),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            ctx.note_error(f"stop hook failed: {cause_message(err)}")
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not ctx.confirming)
        s.state = AgentState.STOPPED
        publish_state(s)
        ctx.record_lifecycle("stopped", reason=s.stop_request.reason, drain=s.stop_request.drain)
        await ctx.audit.drained()
        return AgentRunSummary(
            agent_id=s.config.id, state=s.state, counters=s.counters, unprocessed_events=list(s.queue)
        )
