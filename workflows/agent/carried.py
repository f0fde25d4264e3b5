"""Keeping what continue-as-new carries, and what a query answers, under their size budgets.

The carried state's growing parts are each bounded (the queue by ``MAX_QUEUE_BYTES``, the dedup
window by ``runtime.dedup_window``, pending actions by ``MAX_PENDING_ACTIONS``, recent problems by
``RECENT_LIMIT``, incidents by ``MAX_OPEN_INCIDENTS`` and their samples), but their bounds add up
past Temporal's payload limit in the worst case (8,000 event ids of 256 characters alone are
2 MB). So the whole input is measured before ``continue_as_new`` and, over
``CARRIED_STATE_BUDGET``, what is safe to shed goes first, oldest first, each step said in
recent_errors:

1. recent problems beyond the last 3, and the recent action durations (they only inform status);
2. the alert samples of open incidents beyond 10 each (counts stay exact: see incidents.py);
3. the older half of the dedup window, at most twice (a redelivered event older than what is
   kept may be decided again; its action id is derived from the event, so it never becomes a
   second action).

The queue, pending actions, signed-command ids and counters are never shed. If the input is
still over budget the run does not continue as new yet (the next batches shrink the queue) and
says so once per run. Pure functions: unit-tested directly.
"""

from __future__ import annotations

from aiops.contracts.agent import AgentRunState, AgentStatus, AgentWorkflowInput
from aiops.contracts.budgets import ANSWER_BUDGET, CARRIED_STATE_BUDGET, Measured, kib, measure

KEEP_PROBLEMS = 3
KEEP_ALERT_SAMPLES = 10


def fit_carried(state: AgentRunState, budget: int = CARRIED_STATE_BUDGET) -> tuple[Measured, list[str]]:
    """Shed what is safe to shed until the next run's input fits; the final measure and what was shed."""
    shed: list[str] = []

    def measured() -> Measured:
        return measure(
            "the state continue-as-new carries",
            AgentWorkflowInput(config=state.config, carried=state),
            budget,
        )

    now = measured()
    steps = [_shed_problems, _shed_samples, _shed_dedup, _shed_dedup]
    for step in steps:
        if now.fits:
            break
        said = step(state)
        if said:
            shed.append(f"{said} ({now.reason})")
            now = measured()
    return now, shed


def _shed_problems(state: AgentRunState) -> str:
    dropped = max(0, len(state.recent_errors) - KEEP_PROBLEMS) + max(
        0, len(state.recent_rejections) - KEEP_PROBLEMS
    )
    del state.recent_errors[:-KEEP_PROBLEMS]
    del state.recent_rejections[:-KEEP_PROBLEMS]
    state.recent_action_seconds = []
    return f"shed {dropped} older recent problems and the recent action durations"


def _shed_samples(state: AgentRunState) -> str:
    dropped = 0
    for incident in state.incidents.values():
        extra = (
            list(incident.alerts)[:-KEEP_ALERT_SAMPLES] if len(incident.alerts) > KEEP_ALERT_SAMPLES else []
        )
        for fingerprint in extra:
            if incident.alerts[fingerprint].status == "resolved":
                del incident.alerts[fingerprint]
                dropped += 1
    return f"shed {dropped} resolved alert samples of open incidents" if dropped else ""


def _shed_dedup(state: AgentRunState) -> str:
    half = len(state.seen_event_ids) // 2
    if half == 0:
        return ""
    del state.seen_event_ids[:half]
    return f"shed the {half} oldest event ids of the dedup window"


def bound_status(status: AgentStatus, budget: int = ANSWER_BUDGET) -> AgentStatus:
    """A status answer under its budget: long lists are cut to their newest entries, and
    ``truncated`` says what was left out (the full pending list is the pending_actions query)."""
    size = measure("status", status, budget)
    if size.fits:
        return status
    pending, incidents = len(status.pending_actions), len(status.incidents)
    cut = status.model_copy(
        update={
            "config": status.config.model_copy(update={"settings": {}}),
            "pending_actions": status.pending_actions[-100:],
            "incidents": status.incidents[-100:],
        }
    )
    cut.truncated = (
        f"the full status is {kib(size.size)}, over {kib(budget)}: showing the newest 100 of {pending} "
        f"pending actions and of {incidents} incidents, and the config without its settings"
    )
    return cut
