"""The health monitor: pure classification rules, and a real run that finds a failing agent.

The end-to-end test runs ``HealthMonitorWorkflow`` on the real dev server: a
deliberately failing agent is marked unhealthy, the snapshot lands in
PostgreSQL, the gauge says 2, and the alerting agent receives the event; a
second run raises no new alert, and the agent's recovery raises one.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import generate_latest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from agents.health import (
    AgentObservation,
    HealthStatus,
    HealthThresholds,
    WorkerResources,
    classify,
    transitions,
)
from aiops.client import AiopsClient
from aiops.health_schedule import ensure_health_schedule, schedule_id
from aiops.metrics import create_telemetry, series
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from workflows.health_monitor import HealthMonitorWorkflow, MonitorInput, MonitorReport

WORKER = WorkerResources(worker="w", memory_mb=100, disk_free_ratio=0.5)
T = HealthThresholds()


def observe(**fields: object) -> AgentObservation:
    return AgentObservation.model_validate({"agent_id": "a", "agent_type": "t", "state": "running", **fields})


@pytest.mark.parametrize(
    ("observation", "worker", "status", "reason"),
    [
        (observe(), WORKER, HealthStatus.HEALTHY, None),
        (observe(reachable=False, problem="timeout"), WORKER, HealthStatus.UNHEALTHY, "no heartbeat"),
        (observe(state="failed"), WORKER, HealthStatus.UNHEALTHY, "failed"),
        (
            observe(checks={"db": False, "api": True}),
            WORKER,
            HealthStatus.UNHEALTHY,
            "failing health check(s): db",
        ),
        (observe(check_error="boom"), WORKER, HealthStatus.UNHEALTHY, "could not run"),
        (observe(circuit_open=True), WORKER, HealthStatus.UNHEALTHY, "circuit breaker"),
        (observe(error_rate=0.6, decisions=20), WORKER, HealthStatus.UNHEALTHY, "error rate 60%"),
        (observe(error_rate=0.2, decisions=20), WORKER, HealthStatus.DEGRADED, "error rate 20%"),
        (observe(error_rate=1.0, decisions=1), WORKER, HealthStatus.HEALTHY, None),
        (observe(success_rate=0.5, finished_actions=10), WORKER, HealthStatus.DEGRADED, "success rate 50%"),
        (observe(success_rate=0.0, finished_actions=2), WORKER, HealthStatus.HEALTHY, None),
        (observe(recent_action_seconds=[900, 700]), WORKER, HealthStatus.DEGRADED, "800s on average"),
        (observe(queue_length=5000), WORKER, HealthStatus.DEGRADED, "5000 events queued"),
        (observe(), WORKER.model_copy(update={"memory_mb": 9000}), HealthStatus.DEGRADED, "MB"),
        (observe(), WORKER.model_copy(update={"disk_free_ratio": 0.01}), HealthStatus.DEGRADED, "disk free"),
    ],
)
def test_classification(observation, worker, status, reason) -> None:
    health = classify(observation, worker, T)
    assert health is not None and health.status == status
    if reason is None:
        assert health.reasons == []
    else:
        assert any(reason in r for r in health.reasons), health.reasons


def test_an_agent_still_initializing_is_judged_only_after_a_while() -> None:
    assert classify(observe(state="initializing", heartbeat_age_seconds=5), WORKER, T) is None
    stuck = classify(observe(state="initializing", heartbeat_age_seconds=900), WORKER, T)
    assert stuck is not None and stuck.status == HealthStatus.DEGRADED
    assert "still initializing after 900s" in stuck.reasons[0]


def test_heartbeat_age_counts_only_when_configured() -> None:
    quiet = observe(heartbeat_age_seconds=7200)
    assert getattr(classify(quiet, WORKER, T), "status", None) == HealthStatus.HEALTHY
    strict = T.model_copy(update={"max_heartbeat_age_seconds": 3600})
    assert getattr(classify(quiet, WORKER, strict), "status", None) == HealthStatus.DEGRADED


def test_transitions_alert_on_change_and_on_a_first_bad_sighting() -> None:
    now = [
        classify(observe(agent_id="same"), WORKER, T),
        classify(observe(agent_id="worse", state="failed"), WORKER, T),
        classify(observe(agent_id="new-bad", circuit_open=True), WORKER, T),
        classify(observe(agent_id="new-good"), WORKER, T),
        classify(observe(agent_id="better"), WORKER, T),
    ]
    before = {"same": HealthStatus.HEALTHY, "worse": HealthStatus.HEALTHY, "better": HealthStatus.DEGRADED}
    changes = {t.agent_id: (t.previous, t.current) for t in transitions(before, [h for h in now if h])}
    assert changes == {
        "worse": (HealthStatus.HEALTHY, HealthStatus.UNHEALTHY),
        "new-bad": (None, HealthStatus.UNHEALTHY),
        "better": (HealthStatus.DEGRADED, HealthStatus.HEALTHY),
    }


async def test_a_failing_agent_is_marked_unhealthy_and_the_alert_reaches_the_alerting_agent(
    env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    LEDGER.clear()
    telemetry = create_telemetry()
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
    )
    aiops = AiopsClient(client, task_queue, pool)
    ailing, fine, pager = agent_config("ailing"), agent_config("recorder"), agent_config("recorder")
    broken = agent_config("init_fails")  # its workflow fails at start: judged and alerted, not gone
    monitor = MonitorInput(task_queue=task_queue, alert_agent_id=pager.id)

    async def check() -> MonitorReport:
        return await client.execute_workflow(
            HealthMonitorWorkflow.run, monitor, id=f"health-{uuid.uuid4()}", task_queue=task_queue
        )

    async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
        for config in (ailing, fine, pager, broken):
            await aiops.start_agent(config)
        await eventually(lambda: aiops.list_agents(), lambda ids: {ailing.id, fine.id, pager.id} <= set(ids))
        await eventually(check, lambda r: {h.agent_id for h in r.agents} == {ailing.id, fine.id, broken.id})
        _, pending, _ = await start_pending_action(aiops, agent_config("scripted", approval=team()), "high")
        report = await eventually(check, lambda r: r.approvals.count_by_type.get("scripted") == 1)
        assert report.approvals.oldest_seconds_by_type["scripted"] >= 0
        verdicts = {h.agent_id: h for h in report.agents}
        assert verdicts[fine.id].status == HealthStatus.HEALTHY
        assert verdicts[ailing.id].status == HealthStatus.UNHEALTHY
        assert verdicts[ailing.id].reasons == ["failing health check(s): upstream"]

        assert verdicts[broken.id].status == HealthStatus.UNHEALTHY
        assert "the agent failed" in verdicts[broken.id].reasons

        status = await eventually(lambda: aiops.status(pager.id), lambda s: s.counters.events_received >= 2)
        assert status.counters.events_received == 2, (
            "one transition each, one alert each: later checks are quiet"
        )
        alerted = sorted(LEDGER["decided"])
        assert len(alerted) == 2 and all(a.startswith("health-") for a in alerted)
        assert {a.rsplit("-", 2)[-2] + "-" + a.rsplit("-", 1)[-1] for a in alerted} == {ailing.id, broken.id}

        rows = await pool.fetch(
            "SELECT status, reasons::text AS reasons FROM health_snapshots WHERE agent_id = $1 ORDER BY seq",
            ailing.id,
        )
        assert len(rows) >= 2 and {r["status"] for r in rows} == {"unhealthy"}
        assert "upstream" in rows[0]["reasons"]

        text = generate_latest(telemetry.registry).decode()
        health = {labels["agent_id"]: v for labels, v in series(text, "aiops_agent_health")}
        assert health[ailing.id] == 2 and health[fine.id] == 0
        waiting = {labels["agent_type"]: v for labels, v in series(text, "aiops_pending_approvals")}
        assert waiting["scripted"] == 1
        alerts = [
            v for labels, v in series(text, "aiops_health_alerts_total") if labels["status"] == "unhealthy"
        ]
        assert sorted(alerts) == [1, 1], "one alert per agent type (ailing, init_fails)"

        # The agent recovers: one more transition, one more alert.
        await aiops.apply_config(ailing.model_copy(update={"settings": {"upstream_ok": True}}), author="sre")
        verdicts = {h.agent_id: h for h in (await check()).agents}
        assert verdicts[ailing.id].status == HealthStatus.HEALTHY
        await aiops.reject(pending, "bob", "not now")
        await eventually(lambda: aiops.status(pager.id), lambda s: s.counters.events_received == 3)


async def test_the_schedule_is_created_once_and_updated_in_place(client: Client, task_queue: str) -> None:
    monitor = MonitorInput(task_queue=task_queue)
    sid = await ensure_health_schedule(client, timedelta(minutes=5), monitor)
    assert sid == schedule_id(task_queue)
    again = await ensure_health_schedule(client, timedelta(minutes=1), monitor)
    assert again == sid
    described = await client.get_schedule_handle(sid).describe()
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=1)]
    await client.get_schedule_handle(sid).delete()


async def test_fleet_gauges_are_exported_once_by_the_worker_that_ran_the_latest_pass(
    env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    """Two workers on one queue, each with its own scrape target: the fleet gauges come from one.

    Worker A runs a monitor pass, then worker B runs the next while A lives on (A stopped polling
    the queue, its scrape target stays). Once the fleet TTL of A's reading passed, A no longer
    exports the fleet gauges and B exports them: the sum over the fleet is one pending approval,
    not two, and no ``aiops_*`` series carries the SDK's ``service_name="temporal-core-sdk"``.
    """
    fleet = ("aiops_pending_approvals", "aiops_oldest_pending_approval_seconds", "aiops_agent_health")
    address = env.client.service_client.config.target_host
    telemetry = {name: create_telemetry(fleet_gauge_ttl=2.0) for name in "AB"}
    clients = {
        name: await Client.connect(address, data_converter=pydantic_data_converter, runtime=t.runtime)
        for name, t in telemetry.items()
    }
    aiops = AiopsClient(clients["A"], task_queue, pool)
    monitor = MonitorInput(task_queue=task_queue)

    async def check(client: Client) -> MonitorReport:
        return await client.execute_workflow(
            HealthMonitorWorkflow.run, monitor, id=f"health-{uuid.uuid4()}", task_queue=task_queue
        )

    def scrape(name: str) -> str:
        return generate_latest(telemetry[name].registry).decode()

    def fleet_series(text: str) -> list[tuple[str, dict[str, str], float]]:
        return [(n, labels, v) for n in fleet for labels, v in series(text, n)]

    fine = agent_config("recorder")
    async with build_worker(clients["A"], task_queue, AgentActivities(client=clients["A"]), pool=pool):
        await aiops.start_agent(fine)
        _, pending, _ = await start_pending_action(aiops, agent_config("scripted", approval=team()), "high")
        report = await eventually(
            lambda: check(clients["A"]), lambda r: fine.id in {h.agent_id for h in r.agents}
        )
        assert report.approvals.count_by_type.get("scripted") == 1
    assert fleet_series(scrape("A")), "worker A ran the pass: it exports the fleet gauges"
    async with build_worker(clients["B"], task_queue, AgentActivities(client=clients["B"]), pool=pool):
        await check(clients["B"])
        await asyncio.sleep(2.5)  # past A's fleet TTL; B's pass was the latest
        await check(clients["B"])
        a, b = scrape("A"), scrape("B")
        assert fleet_series(a) == [], "a worker that did not run the latest pass exports no fleet gauge"
        pending_total = sum(v for text in (a, b) for labels, v in series(text, "aiops_pending_approvals")
                            if labels["agent_type"] == "scripted")  # fmt: skip
        assert pending_total == 1, "one pending action reads 1 across the fleet, not one per worker"
        health = [v for labels, v in series(b, "aiops_agent_health") if labels["agent_id"] == fine.id]
        assert health == [0]
        for text in (a, b):
            for line in text.splitlines():
                if line.startswith("aiops_"):
                    assert "service_name=" not in line, line
        await aiops.reject(pending, "bob", "not now")
