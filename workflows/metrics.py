"""The framework's metrics recorded from workflow code, replay-safe.

``workflow.metric_meter()`` records nothing while a workflow replays, so a
step counts once however often its history is replayed. Names are the
Prometheus names ``aiops/metrics.py`` exposes.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

EVENTS = "aiops_events_total"
ACTIONS = "aiops_actions_total"
APPROVAL_WAIT = "aiops_approval_wait_seconds"
ACTION_DURATION = "aiops_action_duration_seconds"


def count_events(agent_type: str, agent_id: str, outcome: str, n: int = 1) -> None:
    if n <= 0:
        return
    workflow.metric_meter().create_counter(EVENTS, "events by outcome").add(
        n, {"agent_type": agent_type, "agent_id": agent_id, "outcome": outcome}
    )


def count_action_status(agent_type: str, status: str) -> None:
    workflow.metric_meter().create_counter(ACTIONS, "actions reaching each status").add(
        1, {"agent_type": agent_type, "status": status}
    )


def observe_approval_wait(agent_type: str, risk_level: str, waited: timedelta) -> None:
    workflow.metric_meter().create_histogram_timedelta(
        APPROVAL_WAIT, "time from pending approval to a decision", "duration"
    ).record(waited, {"agent_type": agent_type, "risk_level": risk_level})


def observe_action_duration(agent_type: str, status: str, took: timedelta) -> None:
    workflow.metric_meter().create_histogram_timedelta(
        ACTION_DURATION, "time from proposal to the final status", "duration"
    ).record(took, {"agent_type": agent_type, "status": status})
