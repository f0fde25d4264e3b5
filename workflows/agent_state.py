"""The agent entity's state, and the pure functions that change it.

``AgentRunState`` is both what the ``status`` query reads and what
continue-as-new carries, so nothing has to be copied field by field at the
boundary. Every function here is pure and deterministic: the workflow passes
in ``now``; the unit tests call them directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.models import AgentConfig, EventType, RiskLevel, SystemEvent
from agents.policy import PolicyContext
from workflows.action_state import ActionOutcome, ActionStatus

RECENT_LIMIT = 20


class AgentState(StrEnum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class AgentCounters(BaseModel):
    events_received: int = 0
    events_processed: int = 0
    events_deduplicated: int = 0
    events_rejected: int = 0
    events_filtered: int = 0
    decision_errors: int = 0
    actions_proposed: int = 0
    actions_duplicate: int = 0
    actions_succeeded: int = 0
    actions_failed: int = 0
    actions_rejected: int = 0


class RecentProblem(BaseModel):
    at: datetime
    message: str
    event_id: str | None = None


class PendingAction(BaseModel):
    action_id: str
    event_id: str
    status: str
    risk_level: RiskLevel
    description: str
    proposed_at: datetime


class StopRequest(BaseModel):
    reason: str = ""
    drain: bool = True


class AgentRunState(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    config: AgentConfig
    state: AgentState = AgentState.INITIALIZING
    subscribed_event_types: list[EventType] = Field(default_factory=list)
    queue: list[SystemEvent] = Field(default_factory=list)
    seen_event_ids: list[str] = Field(default_factory=list)
    counters: AgentCounters = Field(default_factory=AgentCounters)
    pending_actions: dict[str, PendingAction] = Field(default_factory=dict)
    recent_errors: list[RecentProblem] = Field(default_factory=list)
    recent_rejections: list[RecentProblem] = Field(default_factory=list)
    last_event_at: datetime | None = None
    started_at: datetime | None = None
    stop_request: StopRequest | None = None
    pause_requested: bool = False
    hold_epoch: int = 0
    decide_attempts: dict[str, int] = Field(default_factory=dict)
    consecutive_failures: int = 0
    circuit_open: bool = False
    auto_executions: list[datetime] = Field(default_factory=list)
    failure: str | None = None
    run_number: int = 1
    recent_action_seconds: list[float] = Field(default_factory=list)


class AgentWorkflowInput(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    """What starts an agent: its config, or the state a previous run carried."""

    config: AgentConfig
    carried: AgentRunState | None = None
    started_by: str = ""


class AgentStatus(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    agent_id: str
    name: str
    type: str
    state: AgentState
    config_version: int
    config: AgentConfig
    counters: AgentCounters
    queue_length: int
    pending_actions: list[PendingAction]
    error_rate: float
    success_rate: float | None
    last_event_at: datetime | None
    started_at: datetime | None
    recent_errors: list[RecentProblem]
    recent_rejections: list[RecentProblem]
    failure: str | None
    run_number: int
    circuit_open: bool
    consecutive_failures: int
    recent_action_seconds: list[float] = Field(default_factory=list)


class AgentRunSummary(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    """What a finished agent run returns."""

    agent_id: str
    state: AgentState
    counters: AgentCounters
    unprocessed_events: list[SystemEvent] = Field(default_factory=list)
    failure: str | None = None


class EventRejected(ValueError):
    """A signal payload that is not a usable event; the message says why."""


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "event"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def parse_event(payload: Any, now: datetime) -> SystemEvent:
    """Turn a signal payload into an event, or raise ``EventRejected`` saying why.

    Runs inside workflow code, so a missing timestamp becomes the workflow's
    ``now`` rather than the wall clock, and a missing id is an error: without
    an id an event cannot be deduplicated.
    """
    if isinstance(payload, SystemEvent):
        return payload
    if not isinstance(payload, dict):
        raise EventRejected(f"event must be a JSON object, got {type(payload).__name__}")
    if "id" not in payload:
        raise EventRejected("id: field required (every event needs an id for deduplication)")
    if "timestamp" not in payload:
        payload = {**payload, "timestamp": now}
    try:
        return SystemEvent.model_validate(payload)
    except ValidationError as err:
        raise EventRejected(describe_validation_error(err)) from None


def remember(state: AgentRunState, seen: set[str], event_id: str) -> None:
    """Add ``event_id`` to the bounded dedup window (oldest forgotten first)."""
    state.seen_event_ids.append(event_id)
    seen.add(event_id)
    excess = len(state.seen_event_ids) - state.config.runtime.dedup_window
    if excess > 0:
        for old in state.seen_event_ids[:excess]:
            seen.discard(old)
        del state.seen_event_ids[:excess]


# The queue is carried through continue-as-new, whose input the server caps at 2 MiB.
MAX_QUEUE_BYTES = 1_000_000
MAX_EVENT_BYTES = 32_000


def event_size(event: SystemEvent) -> int:
    return len(event.model_dump_json())


def admit(
    state: AgentRunState, seen: set[str], event: SystemEvent, now: datetime, size: int, queue_bytes: int
) -> Admission:
    """Queue a valid event unless its id was seen within the dedup window.

    Raises ``EventRejected`` when the event is too large or the queue is full: the
    queue is bounded in events and bytes so the state continue-as-new carries stays
    within the server's payload limit.
    """
    if size > MAX_EVENT_BYTES:
        raise EventRejected(
            f"event {event.id} is {size} bytes, over the {MAX_EVENT_BYTES}-byte limit; "
            "keep large payloads elsewhere and send a reference in data"
        )
    if len(state.queue) >= state.config.runtime.max_queue or queue_bytes + size > MAX_QUEUE_BYTES:
        raise EventRejected(
            f"event {event.id}: the queue is full ({len(state.queue)} events, {queue_bytes} bytes waiting; "
            f"the agent is {state.state.value}); resend it later"
        )
    state.counters.events_received += 1
    state.last_event_at = now
    if event.id in seen:
        state.counters.events_deduplicated += 1
        return Admission.DUPLICATE
    remember(state, seen, event.id)
    state.queue.append(event)
    return Admission.ACCEPTED


def take_batch(state: AgentRunState, limit: int) -> tuple[list[SystemEvent], list[SystemEvent]]:
    """The next batch off the queue, split into subscribed events and filtered ones.

    Filtering happens here, not at admission, because events may arrive before
    initialization has told the workflow which types the agent subscribes to.
    """
    batch = state.queue[: max(1, min(limit, state.config.runtime.batch_size))]
    wanted = set(state.subscribed_event_types)
    subscribed = [e for e in batch if e.type in wanted]
    filtered = [e for e in batch if e.type not in wanted]
    return subscribed, filtered


def record_problem(problems: list[RecentProblem], problem: RecentProblem) -> None:
    problems.append(problem)
    del problems[:-RECENT_LIMIT]


def status_of(state: AgentRunState) -> AgentStatus:
    counters = state.counters
    finished = counters.actions_succeeded + counters.actions_failed
    return AgentStatus(
        agent_id=state.config.id,
        name=state.config.name,
        type=state.config.type,
        state=state.state,
        config_version=state.config.version,
        config=state.config,
        counters=counters,
        queue_length=len(state.queue),
        pending_actions=list(state.pending_actions.values()),
        error_rate=(counters.decision_errors / counters.events_processed)
        if counters.events_processed
        else 0.0,
        success_rate=(counters.actions_succeeded / finished) if finished else None,
        last_event_at=state.last_event_at,
        started_at=state.started_at,
        recent_errors=state.recent_errors,
        recent_rejections=state.recent_rejections,
        failure=state.failure,
        run_number=state.run_number,
        circuit_open=state.circuit_open,
        consecutive_failures=state.consecutive_failures,
        recent_action_seconds=state.recent_action_seconds,
    )


def record_outcome(state: AgentRunState, outcome: ActionOutcome) -> bool:
    """Count a finished action once; trip the circuit breaker after K failures in a row."""
    pending = state.pending_actions.get(outcome.action_id)
    if not outcome.status.is_final:
        if pending is not None:
            pending.status = outcome.status.value
        return False
    if state.pending_actions.pop(outcome.action_id, None) is None:
        return False  # not ours, or already counted
    counters = state.counters
    if outcome.duration_seconds is not None:
        state.recent_action_seconds = [*state.recent_action_seconds, outcome.duration_seconds][-RECENT_LIMIT:]
    if outcome.status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED):
        counters.actions_succeeded += 1
        state.consecutive_failures = 0
    elif outcome.status in (ActionStatus.FAILED, ActionStatus.ROLLED_BACK):
        counters.actions_failed += 1
        state.consecutive_failures += 1
        if state.consecutive_failures >= state.config.approval.circuit_breaker_failures:
            state.circuit_open = True
    else:
        counters.actions_rejected += 1
    return True


def policy_context(state: AgentRunState, now: datetime) -> PolicyContext:
    """Forget automatic executions older than the window, then describe the rest."""
    window = timedelta(seconds=state.config.approval.auto_execution_window_seconds)
    state.auto_executions = [t for t in state.auto_executions if t > now - window]
    return PolicyContext(
        circuit_open=state.circuit_open, auto_executions_in_window=len(state.auto_executions)
    )
