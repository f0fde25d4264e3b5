"""AgentWorkflow: one long-running entity per agent, fed events by signal and update.

A thin shell: ``run`` is the main loop, and every handler is a one-line delegate to a component
of this package (``intake``, ``commands``, ``actions``, ``reconfigure``, ``decisions``,
``lifecycle``), all sharing one ``AgentContext``. The messages themselves (names, types, what
each does) are declared once, in ``aiops.contracts.agent.AgentMessages``, which callers send by.

Handlers only validate and queue; the loop drains the queue in batches (one decision activity per
batch, so a storm does not become a history explosion) and starts one ``ActionWorkflow`` per
proposed action. Before the server's history limits it continues as new, carrying the whole
state, queue and dedup window included, once every handler has finished.

Concurrency: the batch step and a config switch both hold the context's ``step_lock``, so a
config changes only between two batches (as in the SDK's ``safe_message_handlers`` sample, a
lock, not flags).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.action import ActionOutcome
    from aiops.contracts.agent import (
        ACTION_FINISHED,
        HOLD_STATE,
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
        AgentMessages,
        AgentRunSummary,
        AgentState,
        AgentStatus,
        CommandApplied,
        CommandRequest,
        ConfigApplied,
        HoldState,
        IntakeAnswer,
        IntakeRequest,
        PendingAction,
    )
    from workflows.agent.actions import Actions
    from workflows.agent.carried import bound_status
    from workflows.agent.commands import Commands
    from workflows.agent.context import AgentContext
    from workflows.agent.decisions import Decisions
    from workflows.agent.health import publish_health, publish_state
    from workflows.agent.intake import Intake
    from workflows.agent.lifecycle import Lifecycle, parse_input, run_state
    from workflows.agent.raw import NO_PAYLOAD
    from workflows.agent.reconfigure import ConfigChanger
    from workflows.agent.state import hold_state_of, status_of

if TYPE_CHECKING:
    StartInput = Any  # callers start an agent with an AgentWorkflowInput (or its JSON)
else:
    StartInput = RawValue  # what the SDK sees: the payload undecoded, read by parse_input


# Pinned under Worker Versioning (the versioned worker's default, aiops/runtime/worker_build.py) to
# the build a run started on; each continue-as-new starts the next run on the current build (see
# Lifecycle.next_run_versioning), so an agent moves to new code when its run is full or a person
# asks (the upgrade command), never in the middle of a run.
@workflow.defn(name=WORKFLOW_TYPE)
class AgentWorkflow(AgentMessages):
    @workflow.init
    def __init__(self, payload: StartInput) -> None:
        input, self._bad_input = parse_input(payload)
        self._ctx = ctx = AgentContext(run_state(input), input.started_by)
        self._actions = Actions(ctx)
        self._intake = Intake(ctx)
        self._commands = Commands(ctx, self._actions)
        self._decisions = Decisions(ctx, self._actions)
        self._lifecycle = Lifecycle(ctx, self._actions)
        self._config = ConfigChanger(ctx, self._commands.authorize_config_change)

    @workflow.run
    async def run(self, payload: StartInput) -> AgentRunSummary:
        if self._bad_input is not None:
            raise ApplicationError(
                f"invalid agent start input: {self._bad_input}", type=INVALID_AGENT_INPUT, non_retryable=True
            )
        ctx, s, life = self._ctx, self._ctx.state, self._lifecycle
        if s.state == AgentState.INITIALIZING:
            await life.initialize()
            if s.has_detector:
                await life.sync_detector(active=True)
        publish_state(s)
        self._health_watch = asyncio.create_task(publish_health(s))
        while True:
            await life.wait_for_work()
            if ctx.spill:
                await life.spill(batches=1)
            if ctx.detector_stale:
                ctx.detector_stale = False
                await life.sync_detector(active=True)
            life.release_incidents()
            if life.has_work():
                async with ctx.step_lock:
                    await self._decisions.decide_batch()
            elif s.stop_request is not None:
                break
            # Also while draining for a stop (the request is carried), and early under a storm.
            if ctx.run_is_full() or self._decisions.storm_run_is_long():
                await life.continue_as_new()
        await life.spill()  # what the full queue could not take is recorded by the overflow
        return await life.stop()

    # ----- messages (declared, with their docs, in AgentMessages) ------------------------

    @workflow.signal(name=SUBMIT_EVENT)
    def submit_event(self, payload: RawValue = NO_PAYLOAD) -> None:
        self._intake.submit_event(payload)

    @workflow.signal(name=SUBMIT_EVENTS)
    def submit_events(self, payload: RawValue = NO_PAYLOAD) -> None:
        self._intake.submit_events(payload)

    # The SDK types an update by its class too, so a re-declaration narrows it: hence the ignores.
    @workflow.update  # named INTAKE by its method name
    def intake(self, request: IntakeRequest) -> IntakeAnswer:  # type: ignore[override]
        return self._intake.intake(request)

    @intake.validator
    def _validate_intake(self, request: IntakeRequest) -> None:
        self._intake.validate(request)

    @workflow.signal(name=PAUSE)
    async def pause(self, command: RawValue = NO_PAYLOAD) -> None:
        await self._commands.pause_signal(command, paused=True)

    @workflow.signal(name=RESUME)
    async def resume(self, command: RawValue = NO_PAYLOAD) -> None:
        await self._commands.pause_signal(command, paused=False)

    @workflow.signal(name=RESET_CIRCUIT_BREAKER)
    def reset_circuit_breaker(self, command: RawValue = NO_PAYLOAD) -> None:
        self._commands.reset_signal(command)

    @workflow.signal(name=STOP)
    def stop(self, request: RawValue = NO_PAYLOAD) -> None:
        self._commands.stop_signal(request)

    @workflow.signal(name=UPGRADE)
    def upgrade(self, command: RawValue = NO_PAYLOAD) -> None:
        self._commands.upgrade_signal(command)

    @workflow.update  # named COMMAND by its method name
    async def command(self, request: CommandRequest) -> CommandApplied:  # type: ignore[override]
        return await self._commands.command(request)

    @workflow.update  # named RECONFIGURE by its method name (a name= here loses the result type)
    async def reconfigure(self, payload: Any = None) -> ConfigApplied:
        return await self._config.apply(payload)

    @reconfigure.validator
    def _validate_reconfigure(self, payload: Any = None) -> None:
        self._config.validate(payload)

    @workflow.signal(name=ACTION_FINISHED)
    def action_finished(self, outcome: ActionOutcome) -> None:
        self._actions.finished(outcome)

    @workflow.query(name=HOLD_STATE)
    def hold_state(self) -> HoldState:
        return hold_state_of(self._ctx.state)

    @workflow.query(name=STATUS)
    def status(self) -> AgentStatus:
        return bound_status(status_of(self._ctx.state))

    @workflow.query(name=PENDING_ACTIONS)
    def pending_actions(self) -> list[PendingAction]:
        return self._actions.pending()
