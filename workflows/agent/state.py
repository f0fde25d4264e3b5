"""Pure functions over the agent's state: its status, action outcomes, problems, policy context.

The state itself (``AgentRunState``) is part of the workflow's contract
(``aiops/contracts/agent.py``), since continue-as-new carries it as the next run's
input. Every function here is deterministic: the workflow passes in ``now``;
the unit tests call them directly. Event intake lives in ``event_intake.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiops.contracts.action import ActionOutcome, ActionStatus
from aiops.contracts.agent import AgentRunState, AgentState, AgentStatus, HoldState, RecentProblem
from aiops.contracts.fields import same_named
from aiops.contracts.policy import PolicyContext
from workflows.agent.incidents import summaries

RECENT_LIMIT = 20


# A problem's message may quote what an agent or a sender wrote: kept short in the carried state.
MAX_PROBLEM_TEXT = 1000
# Actions proposed and not yet final that an agent tracks; past this it decides no new batch until
# some finish, so the state continue-as-new carries stays bounded (nothing is dropped: events wait).
MAX_PENDING_ACTIONS = 1000


def record_problem(problems: list[RecentProblem], problem: RecentProblem) -> None:
    if len(problem.message) > MAX_PROBLEM_TEXT:
        problem = problem.model_copy(update={"message": problem.message[:MAX_PROBLEM_TEXT] + "..."})
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
        **same_named(
            state,
            "last_event_at",
            "started_at",
            "recent_errors",
            "recent_rejections",
            "failure",
            "run_number",
            "circuit_open",
            "consecutive_failures",
            "recent_action_seconds",
        ),
        incidents=summaries(state.incidents),
    )


def hold_state_of(state: AgentRunState) -> HoldState:
    """What this agent's actions confirm a hold, release or abort signal against."""
    stop = state.stop_request
    aborting = (
        stop is not None and not stop.drain and state.state in (AgentState.STOPPING, AgentState.STOPPED)
    )
    return HoldState(
        paused=state.state == AgentState.PAUSED,
        hold_epoch=state.hold_epoch,
        abort_reason=(stop.reason or "the agent stopped") if aborting and stop is not None else None,
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
