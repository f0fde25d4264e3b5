"""Activities that run the agent author's hooks, one call per workflow step.

Errors retrying cannot fix (unknown type, invalid config, an agent's
``NonRetryableActionError``) leave as non-retryable ``ApplicationError``s named
after their class, so Temporal stops at once; anything else is retried by the
calling workflow's retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from activities.action_ends import published_outcome
from activities.agent_instances import AgentInstances
from activities.database.audit_log import AuditLog
from agents.base_agent import BaseAgent
from agents.config_diff import same_but_version
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import ActionOutcome
from aiops.contracts.activities import (
    NON_RETRYABLE_AGENT_ERROR_CLASSES,
    ActionCall,
    AgentInitialized,
    AgentStarted,
    AttemptLog,
    AuditRecord,
    ConfigProposal,
    DecideEventsInput,
    DecideEventsResult,
    DecisionAudit,
    EscalationNotice,
    EventDecision,
    ExecutionAttempt,
    ExecutionOutcome,
    PlannedHere,
    StartAgentCall,
    StoredConfig,
    VerifyCall,
    attempts_after,
)
from aiops.contracts.audit_rows import bounded_record, event_record, lifecycle_record
from aiops.contracts.budgets import bound_decisions
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import ActionResult, AgentAction, Plan, SystemEvent, escalation_alert

log = logging.getLogger("aiops.activities")

# A decision writes its audit rows within this (and within half the time its timeout leaves);
# slower (a database in trouble) and the workflow's outbox writes them instead, retrying until
# they land.
AUDIT_WRITE_SECONDS = 5.0

T = TypeVar("T")


async def _run_hook(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except NON_RETRYABLE_AGENT_ERROR_CLASSES as err:
        # An agent's NonRetryableActionError is an expected outcome (the agent logged it as one
        # WARNING line): BENIGN keeps the SDK from logging it again with a traceback (DEBUG instead).
        category = (
            ApplicationErrorCategory.BENIGN
            if isinstance(err, NonRetryableActionError)
            else ApplicationErrorCategory.UNSPECIFIED
        )
        raise ApplicationError(
            str(err), type=type(err).__name__, non_retryable=True, category=category
        ) from err


async def _with_heartbeats(awaitable: Awaitable[T], *details: Any) -> T:
    """Heartbeat (with ``details``) while a long hook runs, so a dead worker is noticed quickly."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return await awaitable
    interval = max(timeout.total_seconds() / 3, 0.1)

    async def beat() -> None:
        while True:
            activity.heartbeat(*details)
            await asyncio.sleep(interval)

    beater = asyncio.create_task(beat())
    try:
        return await awaitable
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater


def _time_left(at_most: float) -> float:
    """Seconds this activity may still spend (half of what its timeout leaves), at most ``at_most``."""
    info = activity.info()
    timeout = info.start_to_close_timeout
    if not timeout:
        return at_most
    left = (info.started_time + timeout - datetime.now(UTC)).total_seconds()
    return max(0.0, min(at_most, left / 2))


def keyed(action: AgentAction) -> AgentAction:
    """``action`` with its idempotency key filled in: the action id, stable across every attempt."""
    return action.model_copy(update={"idempotency_key": action.id})


async def write_decision_audit(
    request: DecideEventsInput, audit: DecisionAudit, decisions: list[EventDecision], to: AuditLog
) -> bool:
    """Write a decided batch's audit rows with the decision, as the workflow would (same keys: a
    retried decision rewrites nothing). True when they landed; else the workflow's outbox writes them."""
    config, now = request.config, datetime.now(UTC)
    rows = []
    for event in audit.filtered:
        rows.append(
            bounded_record(event_record(
                config.id, audit.run_id, event, EventDecision(event_id=event.id),
                audit.attempts.get(event.id, 0), config.version, now, filtered=True,
            ))
        )  # fmt: skip
    by_id = {e.id: e for e in request.events}
    for decision in decisions:
        event = by_id[decision.event_id]
        attempts = attempts_after(audit.attempts.get(event.id, 0), decision)
        row = event_record(config.id, audit.run_id, event, decision, attempts, config.version, now)
        rows.append(bounded_record(row))
    return await _append_in_time(rows, to, "the decision")


async def _append_in_time(rows: list[AuditRecord], to: AuditLog, written_with: str) -> bool:
    """Write ``rows`` within ``AUDIT_WRITE_SECONDS`` (and half the time this activity has left):
    True when they landed; else the workflow's outbox writes them, retrying until they land."""
    within = _time_left(AUDIT_WRITE_SECONDS)
    if within < 0.5:  # the hooks took nearly all the activity's time: the outbox writes them
        return False
    try:
        await asyncio.wait_for(to.append(rows), within)
    except Exception as err:  # the outbox writes them, retrying until they land
        log.warning("audit rows not written with %s, the workflow will write them: %s", written_with, err)
        return False
    return True


class AgentActivities:
    """The activities that run agent code. Except ``notify_escalation``, they run on the agent
    type's own task queue (``hooks_task_queue``), which only workers that have the type poll;
    ``decide_events`` may also run as a local activity on whichever worker runs the agent's
    workflow task, and then answers ``unserved`` when this worker lacks the type."""

    HOOKS = ("initialize_agent", "detect", "decide_events", "stop_agent", "plan_action",
             "execute_action", "verify_action", "rollback_action")  # fmt: skip

    def __init__(
        self,
        instances: AgentInstances | None = None,
        client: Client | None = None,
        identity: str = "",
        agent_types: Iterable[str] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.instances = instances or AgentInstances()
        # The audit log decisions write their rows to (None: no database; see decide_events).
        self.audit = audit
        # Registers an agent's starting config (ConfigActivities.register_config; see start_agent).
        self.register: Callable[[ConfigProposal], Awaitable[StoredConfig | None]] | None = None
        self.client = client
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        # The types this worker serves: every registered one unless narrowed (a worker pool).
        self.agent_types = frozenset(
            agent_types if agent_types is not None else self.instances.factory.types()
        )

    def serves(self, agent_type: str) -> bool:
        return agent_type in self.agent_types

    @activity.defn
    async def initialize_agent(self, config: AgentConfig) -> AgentInitialized:
        agent = await _run_hook(self.instances.get(config))
        return AgentInitialized(
            agent_class=f"{type(agent).__module__}.{type(agent).__qualname__}",
            subscribed_event_types=agent.get_subscribed_event_types(),
            has_detector=agent.has_detector(),
            audit_log=self.audit is not None,
            has_plan=agent.has_hook("_plan_specific"),
        )

    @activity.defn
    async def start_agent(self, call: StartAgentCall) -> AgentStarted:
        """An agent's start in one local activity where this worker can do it: register the
        config (``register``, wired by the worker to the config store) and run the initialize
        hook (if this worker has the type). Whatever fails or cannot run here is left undone, and
        the workflow does it the usual way (activities with their own retries); so this adds no
        failure mode, it only saves two activity round trips per agent start."""
        started, config = AgentStarted(), call.config
        if call.proposal is not None:
            if self.register is None:
                return started
            try:
                started.stored = await self.register(call.proposal)
            except Exception as err:  # the usual path retries it (a database outage, say)
                started.problem = f"registration: {type(err).__name__}: {err}"[:500]
                return started
            started.registered = True
            if started.stored is not None:
                config = started.stored.config
                if same_but_version(call.config, config):  # the usual case: a small answer
                    started.stored_version, started.stored = started.stored.version, None
        if not self.serves(config.type):
            return started
        try:
            started.initialized = await self.initialize_agent(config)
        except Exception as err:  # the usual path retries it, on the type's own queue
            started.problem = f"initialization: {type(err).__name__}: {err}"[:500]
            return started
        sequence, run_id = call.started_sequence, activity.info().workflow_run_id
        if sequence is not None and run_id and started.registered and self.audit is not None:
            row = lifecycle_record(
                config.id, run_id, "started", sequence, call.started_by, datetime.now(UTC),
                config_version=config.version,
            )  # fmt: skip
            started.audited = await _append_in_time([bounded_record(row)], self.audit, "the agent's start")
        return started

    @activity.defn
    async def detect(self, config: AgentConfig) -> list[SystemEvent]:
        """Run the agent's detector once (read-only; at least once per schedule tick)."""
        agent = await _run_hook(self.instances.get(config))
        return await _run_hook(agent.detect())

    @activity.defn
    async def decide_events(self, request: DecideEventsInput) -> DecideEventsResult:
        """Run ``process_event`` for a batch; one event's failure never sinks the others."""
        if not self.serves(request.config.type):  # a local decision on a worker of another pool
            return DecideEventsResult(unserved=True)
        agent = await _run_hook(self.instances.get(request.config))
        writes_rows = request.audit is not None and self.audit is not None
        # A compact answer leaves the quiet events out (see DecideEventsResult.compact): unless the
        # audit rows are written here, no decision is built for them (one per event was a third
        # of this activity's own time in a storm of quiet events).
        quiet_too = writes_rows or not request.compact

        async def decide_all() -> list[EventDecision]:
            decisions = []
            for event in request.events:
                try:
                    action = await agent.process_event(event)
                    if action is not None or quiet_too:
                        decisions.append(EventDecision(event_id=event.id, action=action))
                except Exception as err:  # the agent's bug is this event's error, not the batch's
                    decisions.append(EventDecision(event_id=event.id, error=f"{type(err).__name__}: {err}"))
            return decisions

        # As a regular activity (slow deciders, such as the llm agent waiting for its diagnosis)
        # it heartbeats, so a dead worker is noticed in seconds, not after the decision timeout.
        # Bounded before they become the result: an oversized proposal must not wedge the agent.
        decisions = bound_decisions(await _with_heartbeats(decide_all()))
        result = DecideEventsResult(decisions=decisions, audit_log=self.audit is not None)
        if request.audit is not None and self.audit is not None:  # writes_rows
            result.audited = await write_decision_audit(request, request.audit, decisions, self.audit)
        if request.compact:  # the quiet events go without saying (see DecideEventsResult.compact)
            result.decisions = [d for d in decisions if d.action is not None or d.error is not None]
            result.compact = True
        return result

    @activity.defn
    async def stop_agent(self, config: AgentConfig) -> bool:
        return await self.instances.stop(config)

    async def _action_hook(
        self, call: ActionCall, hook: Callable[[BaseAgent[Any], AgentAction], Awaitable[T]]
    ) -> T:
        """Run one of the agent's action hooks on the keyed action, heartbeating while it runs."""
        agent = await _run_hook(self.instances.get(call.config))
        return await _with_heartbeats(_run_hook(hook(agent, keyed(call.action))))

    @activity.defn
    async def plan_action(self, call: ActionCall) -> Plan | None:
        return await self._action_hook(call, BaseAgent.plan)

    @activity.defn
    async def plan_action_here(self, call: ActionCall) -> PlannedHere:
        """The dry run in a local activity, on the worker running the action's workflow task, where
        that worker has the agent's type: it saves the action a round trip to the type's queue
        before it can execute. Whatever fails or cannot run here is left to the usual
        ``plan_action`` activity and its retries, so it adds no failure mode (a plan is read-only:
        a hook that failed here runs again there)."""
        if not self.serves(call.config.type):
            return PlannedHere(problem=f"this worker does not serve agent type {call.config.type!r}")
        try:
            agent = await _run_hook(self.instances.get(call.config))
            return PlannedHere(planned=True, plan=await _run_hook(agent.plan(keyed(call.action))))
        except Exception as err:  # the usual path retries it, on the type's own queue
            return PlannedHere(problem=f"{type(err).__name__}: {err}"[:500])

    @activity.defn
    async def execute_action(self, call: ActionCall) -> ExecutionOutcome:
        """Run the action (its id is the idempotency key the agent must use) and keep a log of
        every attempt for the audit trail.

        Each attempt appends itself to the log the previous attempt left in its
        heartbeat details; the log comes back with the result, or in the details
        of the final failure, so the workflow can record each attempt.
        """
        info = activity.info()
        log_so_far = AttemptLog()
        if info.heartbeat_details:
            with contextlib.suppress(Exception):
                log_so_far = AttemptLog.model_validate(info.heartbeat_details[0])
        log_so_far.attempts.append(
            ExecutionAttempt(attempt=info.attempt, started_at=datetime.now(UTC), worker=self.identity)
        )
        details = log_so_far.model_dump(mode="json")
        activity.heartbeat(details)
        try:
            result = await self._execute(call, details)
        except Exception as err:
            log_so_far.attempts[-1].error = f"{type(err).__name__}: {err}"
            details = log_so_far.model_dump(mode="json")
            activity.heartbeat(details)
            if isinstance(err, ApplicationError):
                raise ApplicationError(
                    err.message,
                    details,
                    type=err.type,
                    non_retryable=err.non_retryable,
                    category=err.category,
                ) from err
            raise ApplicationError(str(err), details, type=type(err).__name__) from err
        return ExecutionOutcome(result=result, attempts=log_so_far.attempts)

    async def _execute(self, call: ActionCall, *heartbeat_details: Any) -> ActionResult:
        agent = await _run_hook(self.instances.get(call.config))
        action = keyed(call.action)
        if call.plan is not None:
            action = action.model_copy(
                update={"parameters": {**action.parameters, "approved_plan": call.plan.model_dump()}}
            )
        log.info(
            "executing action %s attempt %d",
            action.id,
            activity.info().attempt,
            extra={"action_id": action.id, "agent_id": action.agent_id},
        )
        return await _with_heartbeats(_run_hook(agent.execute_action(action)), *heartbeat_details)

    @activity.defn
    async def verify_action(self, call: VerifyCall) -> bool | None:
        """The verify hook's verdict, or None when the agent has no verify hook."""
        agent = await _run_hook(self.instances.get(call.config))
        if not agent.has_hook("_verify_specific"):
            return None
        return await _run_hook(agent.verify(call.action, call.result))

    @activity.defn
    async def rollback_action(self, call: ActionCall) -> ActionResult | None:
        return await self._action_hook(call, BaseAgent.rollback)

    @activity.defn
    async def notify_escalation(self, notice: EscalationNotice) -> None:
        """Tell the escalation target: always a warning log line, and for ``agent:<id>``
        an ``alert`` event delivered to that agent (its id derives from the action, so a
        retried notification is deduplicated, not repeated)."""
        log.warning(
            "ESCALATION to %s: %s",
            notice.target,
            notice.message,
            extra={"action_id": notice.action_id, "agent_id": notice.agent_id},
        )
        if not notice.target.startswith("agent:"):
            return
        if self.client is None:
            raise ApplicationError("no Temporal client to deliver the escalation", non_retryable=True)
        alert = escalation_alert(
            "escalation",
            notice.action_id,
            source=f"action/{notice.action_id}",
            data={"action_id": notice.action_id, "agent_id": notice.agent_id, "message": notice.message},
            correlation_id=notice.action_id,
        )
        target = notice.target.removeprefix("agent:")
        try:
            await self.client.get_workflow_handle(agent_contract.agent_workflow_id(target)).signal(
                agent_contract.AgentMessages.submit_event, alert.model_dump(mode="json")
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ApplicationError(
                    f"escalation target agent {target!r} is not running", non_retryable=True
                ) from err
            raise

    def hooks(self) -> list[Callable[..., Any]]:
        """The activities that run agent code: served on each agent type's queue."""
        return [getattr(self, name) for name in self.HOOKS]

    @activity.defn
    async def execute_dispatched(self) -> None:
        """Nothing, at once: a workflow task for what can wait until execute is on its way.

        An action schedules this beside ``execute_action``, on the same queue, so the server hands
        both to this worker in its one answer; this one's completion brings the action's next
        workflow task, which publishes ``executing`` to the approval inbox. A search attribute
        upsert in the task that schedules execute made the server answer that task about 3 ms
        later (bench/upsert_probe.py), most of an approval's distance to raw Temporal."""

    @activity.defn
    async def agent_hold_state(self, agent_workflow_id: str) -> agent_contract.HoldState | None:
        """The agent's own word on whether its actions hold, go ahead or abort (None: the agent
        is gone). An action asks this when a hold, release or abort signal arrives, since anyone
        who can reach Temporal can send one; only the agent's state, changed by verified
        commands, decides."""
        if self.client is None:
            raise ApplicationError("no Temporal client to ask the agent", non_retryable=True)
        try:
            agent = self.client.get_workflow_handle(agent_workflow_id)
            state: agent_contract.HoldState = await agent.query(agent_contract.AgentMessages.hold_state)
            return state
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    @activity.defn
    async def action_outcome(self, action_workflow_id: str) -> ActionOutcome | None:
        """The action's own word on how it ended (None: no such action). An agent asks this when
        an ``action_finished`` signal claims an end, since anyone can send one; only what the
        action itself published is counted (successes, failures, the circuit breaker). Read from
        the server's record of the workflow (its ``AiopsActionStatus``, upserted with the final
        status in the same task that sends the signal), so no worker has to answer a query. An
        action whose workflow closed without a final status (terminated by hand, timed out) is
        ``failed``: it told nobody (activities/action_ends.py)."""
        if self.client is None:
            raise ApplicationError("no Temporal client to ask the action", non_retryable=True)
        try:
            described = await self.client.get_workflow_handle(action_workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return published_outcome(action_workflow_id, described)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity: the hooks (as local decisions may need them) and the notifications."""
        asks = [self.agent_hold_state, self.action_outcome]  # an action asks its agent, and back
        here: list[Callable[..., Any]] = [self.start_agent, self.plan_action_here]  # local, where it can
        return [*self.hooks(), self.notify_escalation, self.execute_dispatched, *here, *asks]
