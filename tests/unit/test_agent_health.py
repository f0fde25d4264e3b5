"""The health summary an agent publishes, and the monitor's triage rules over it (pure functions).

The property that matters: an ``ok`` summary never hides what ``classify`` would flag, for any
thresholds ``summary_covers``; every other case gets a closer look.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities import health_activities
from aiops.contracts.agent import AgentCounters, AgentRunState, AgentState
from aiops.contracts.config import AgentConfig
from aiops.contracts.health import AgentObservation, HealthStatus, HealthThresholds, WorkerResources, classify
from aiops.contracts.health_summary import (
    OK,
    closer_look,
    health_summary,
    last_poll,
    queue_silence,
    summary_covers,
)
from tests.helpers import event
from workflows.agent.state import status_of

WORKER = WorkerResources(worker="w", memory_mb=100, disk_free_ratio=0.5)


def state(**fields: object) -> AgentRunState:
    config = AgentConfig(id="a", name="a", type="t")
    return AgentRunState.model_validate({"config": config, "state": AgentState.RUNNING, **fields})


def counters(**fields: int) -> AgentCounters:
    return AgentCounters.model_validate(fields)


@pytest.mark.parametrize(
    ("run_state", "summary"),
    [
        (state(), OK),
        (state(counters=counters(events_processed=10_000)), OK),  # busy and fine: still ok
        (state(circuit_open=True), "circuit_open"),
        (state(counters=counters(events_processed=100, decision_errors=4)), OK),  # 4% < 5%
        (state(counters=counters(events_processed=100, decision_errors=5)), "errors"),
        (state(counters=counters(events_processed=1, decision_errors=1)), "errors"),  # no minimum count
        (state(counters=counters(actions_succeeded=9, actions_failed=1)), OK),  # 90%
        (state(counters=counters(actions_succeeded=8, actions_failed=1)), "action_failures"),  # 89%
        (state(counters=counters(actions_succeeded=0, actions_failed=1)), "action_failures"),
        (state(counters=counters(actions_rejected=5)), OK),  # rejections are not failures
        (state(recent_action_seconds=[300, 300]), OK),
        (state(recent_action_seconds=[400, 300]), "slow_actions"),
        (state(queue=[event(id=f"e{i}") for i in range(501)]), "backlog"),
        (
            state(
                circuit_open=True, counters=counters(actions_failed=3, events_processed=2, decision_errors=1)
            ),
            "action_failures,circuit_open,errors",
        ),
    ],
)
def test_the_summary_names_what_needs_a_look(run_state: AgentRunState, summary: str) -> None:
    assert health_summary(run_state) == summary


def observation_of(run_state: AgentRunState) -> AgentObservation:
    """What the monitor's status query makes of this state (the activity's own mapping)."""
    return health_activities.observation_of("a", status_of(run_state), datetime.now(UTC))


STATES = [
    state(counters=counters(events_processed=n, decision_errors=e, actions_succeeded=s, actions_failed=f))
    for n, e in [(0, 0), (1, 0), (10, 1), (20, 1), (100, 4), (100, 50), (1000, 49)]
    for s, f in [(0, 0), (1, 0), (0, 1), (9, 1), (17, 3), (79, 21), (100, 1)]
] + [state(recent_action_seconds=[d]) for d in (1, 299, 300, 301, 601)]
THRESHOLDS = [
    HealthThresholds(),
    HealthThresholds(degraded_error_rate=0.05, min_decisions=1, min_finished_actions=1, min_success_rate=0.9),
    HealthThresholds(max_action_seconds=300, max_queue_length=500, unhealthy_error_rate=0.06),
]


@pytest.mark.parametrize("thresholds", THRESHOLDS)
def test_an_ok_summary_never_hides_a_finding_under_covered_thresholds(thresholds: HealthThresholds) -> None:
    assert summary_covers(thresholds)
    for run_state in STATES:
        if health_summary(run_state) == OK:
            verdict = classify(observation_of(run_state), WORKER, thresholds)
            assert verdict is not None and verdict.status == HealthStatus.HEALTHY, (run_state, verdict)


@pytest.mark.parametrize(
    "stricter",
    [
        {"degraded_error_rate": 0.01},
        {"unhealthy_error_rate": 0.04},
        {"min_success_rate": 0.95},
        {"max_action_seconds": 120},
        {"max_queue_length": 100},
        {"max_heartbeat_age_seconds": 3600},
    ],
)
def test_thresholds_stricter_than_the_summary_are_not_covered(stricter: dict[str, float]) -> None:
    assert not summary_covers(HealthThresholds.model_validate(stricter))


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("running", OK, "Running", (), True), None),
        (("paused", OK, "Running", (), True), None),
        (("running", OK, "Running", (), False), "stricter thresholds"),
        (("running", "circuit_open", "Running", (), True), "summary circuit_open"),
        (("running", None, "Running", (), True), "no health summary"),
        (("initializing", OK, "Running", (), True), "state initializing"),
        (("stopping", OK, "Running", (), True), "state stopping"),
        ((None, None, "Running", (), True), "no health summary"),
        (("failed", OK, "Failed", (), True), "workflow failed"),
        (("running", OK, "Running", ("WorkflowTaskFailed",), True), "the server reports WorkflowTaskFailed"),
    ],
)
def test_who_gets_a_closer_look(row: tuple, reason: str | None) -> None:
    found = closer_look(*row)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_queue_is_served_while_a_worker_polled_it_recently() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    polls = [now - timedelta(seconds=70), now - timedelta(seconds=5)]
    assert last_poll(polls) == now - timedelta(seconds=5)
    assert queue_silence(last_poll(polls), now, 120) is None
    assert queue_silence(now - timedelta(seconds=300), now, 120) == "no worker polled it for 300s"
    assert queue_silence(last_poll([]), now, 120) == "no worker has polled it"
