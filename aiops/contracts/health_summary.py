"""An agent's health summary: what it publishes about itself so the monitor need not ask.

Every agent run (since patch ``health-summary-v1``) keeps one search attribute,
``AiopsHealth``, in line with its state: ``ok``, or the sorted, comma-joined
flags of what might make ``aiops/contracts/health.py`` ``classify`` judge it degraded or
unhealthy. The flags are levels, not figures, so the attribute changes rarely
(each change is one history event): a healthy agent publishes ``ok`` once and
never again, whatever it processes.

The summary is a conservative prefilter, never the verdict: its levels are at
or below the monitor's defaults, so ``ok`` implies healthy under any thresholds
``summary_covers``; an agent with a flag, without a summary (its run started
before the patch), in another state than running or paused, or reported by the
server for failing workflow tasks, is looked at closely (status query, health
check). Pure functions, unit-tested in ``tests/unit/test_agent_health.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aiops.contracts.agent import AgentRunState
from aiops.contracts.health import HealthThresholds

OK = "ok"
# The flags, in the order they are joined.
ACTION_FAILURES = "action_failures"
BACKLOG = "backlog"
CIRCUIT_OPEN = "circuit_open"
ERRORS = "errors"
SLOW_ACTIONS = "slow_actions"

# The summary's levels: at or below the monitor's defaults (aiops/contracts/health.py HealthThresholds), with
# no minimum count, so that "ok" stays true for any thresholds at least this lax.
ERROR_RATE = 0.05  # decision errors / events processed (defaults: degraded 0.1, unhealthy 0.5)
SUCCESS_RATE = 0.9  # succeeded / finished actions (default: degraded below 0.8)
ACTION_SECONDS = 300.0  # mean of the recent actions (default: degraded above 600)
QUEUE_LENGTH = 500  # queued events (default: degraded above 1000)

# States whose agents the summary alone may judge; any other is looked at closely.
JUDGED_BY_SUMMARY = ("running", "paused")
_STATES = ", ".join(f"'{s}'" for s in JUDGED_BY_SUMMARY)
# Visibility clauses (``closer_look`` in the store's words): the agents that need a closer look, and
# the running ones whose summary is enough (the server's TemporalReportedProblems: failing tasks).
NEEDS_A_LOOK = (
    f"(ExecutionStatus != 'Running' OR AiopsHealth IS NULL OR AiopsHealth != '{OK}'"
    f" OR AiopsAgentState IS NULL OR AiopsAgentState NOT IN ({_STATES})"
    " OR TemporalReportedProblems IS NOT NULL)"
)
SUMMARY_OK = f"AiopsHealth = '{OK}' AND AiopsAgentState IN ({_STATES}) AND TemporalReportedProblems IS NULL"


def health_summary(state: AgentRunState) -> str:
    """``ok``, or the flags of what needs a closer look (sorted, comma-joined)."""
    flags: list[str] = []
    c = state.counters
    finished = c.actions_succeeded + c.actions_failed
    if finished and c.actions_succeeded / finished < SUCCESS_RATE:
        flags.append(ACTION_FAILURES)
    if len(state.queue) > QUEUE_LENGTH:
        flags.append(BACKLOG)
    if state.circuit_open:
        flags.append(CIRCUIT_OPEN)
    if c.decision_errors and c.events_processed and c.decision_errors / c.events_processed >= ERROR_RATE:
        flags.append(ERRORS)
    recent = state.recent_action_seconds
    if recent and sum(recent) / len(recent) > ACTION_SECONDS:
        flags.append(SLOW_ACTIONS)
    return ",".join(flags) or OK


def summary_covers(t: HealthThresholds) -> bool:
    """Whether an ``ok`` summary implies that ``classify`` finds nothing in the agent's own figures
    under these thresholds (the worker's memory and disk are judged by the monitor either way).
    Thresholds stricter than the summary's levels, or the heartbeat age (which needs the time of
    the last event), make the monitor look at every agent closely, as before the summary."""
    return (
        min(t.degraded_error_rate, t.unhealthy_error_rate) >= ERROR_RATE
        and t.min_success_rate <= SUCCESS_RATE
        and t.max_action_seconds >= ACTION_SECONDS
        and t.max_queue_length >= QUEUE_LENGTH
        and t.max_heartbeat_age_seconds is None
    )


def closer_look(
    state: str | None,
    summary: str | None,
    execution_status: str,
    reported_problems: Iterable[str] = (),
    covered: bool = True,
) -> str | None:
    """Why the monitor must query this agent (its visibility row says so), or None when its
    summary is enough. ``execution_status`` is the workflow's (``Running``, ``Failed``, ...)."""
    if execution_status != "Running":
        return f"workflow {execution_status.lower()}"
    problems = sorted(reported_problems)
    if problems:
        return "the server reports " + ", ".join(problems)
    if summary is None:
        return "no health summary (not published yet)"
    if state not in JUDGED_BY_SUMMARY:
        return f"state {state or 'unknown'}"
    if summary != OK:
        return f"summary {summary}"
    if not covered:
        return "the summary is not enough for this pass (stricter thresholds or a full sweep)"
    return None


def last_poll(poll_times: Iterable[datetime]) -> datetime | None:
    """The latest poll among a task queue's pollers (None: no poller seen)."""
    return max(poll_times, default=None)


def queue_silence(last: datetime | None, now: datetime, limit_seconds: float) -> str | None:
    """Why no worker serves a task queue (None: one polled it within ``limit_seconds``).

    An idle worker re-polls at least every minute (the server's long poll), so a limit well above
    that tells a stopped worker from an idle one. The server keeps a poller listed for minutes
    after its worker went away: the time of its last poll is what counts."""
    if last is None:
        return "no worker has polled it"
    silent = (now - last).total_seconds()
    if silent > limit_seconds:
        return f"no worker polled it for {silent:.0f}s"
    return None
