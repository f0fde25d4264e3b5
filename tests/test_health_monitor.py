"""The health monitor: pure classification rules, and a real run that finds a failing agent.

The end-to-end test runs ``HealthMonitorWorkflow`` on the real dev server: a
deliberately failing agent is marked unhealthy, the snapshot lands in
PostgreSQL, the gauge says 2, and the alerting agent receives the event; a
second run raises no new alert, and the agent's recovery raises one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import generate_latest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.agent_activities import AgentActivities
from aiops.client import AiopsClient
from aiops.contracts import search_attributes as sa
from aiops.contracts.agent import AgentWorkflowInput, agent_workflow_id
from aiops.contracts.health import (
    AgentObservation,
    HealthStatus,
    HealthThresholds,
    WorkerResources,
    classify,
    transitions,
)
from aiops.health_schedule import ensure_health_schedule, schedule_id
from aiops.metrics import Telemetry, create_telemetry, series
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.support.agents_for_tests import LEDGER
from workflows.agent.workflow import AgentWorkflow
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
            # the broken one past the client's config check, to reach its failing start
            await aiops.agents.start(config, require_worker=config is not broken)
        await eventually(lambda: aiops.agents.ids(), lambda ids: {ailing.id, fine.id, pager.id} <= set(ids))
        # The healthy agent is counted, not listed; the alerting agent is left out of both.
        await eventually(
            check,
            lambda r: (
                {h.agent_id for h in r.verdicts()} == {ailing.id, broken.id} and r.counted == {"recorder": 1}
            ),
        )
        _, pending, _ = await start_pending_action(aiops, agent_config("scripted", approval=team()), "high")
        report = await eventually(check, lambda r: r.approvals.count_by_type.get("scripted") == 1)
        assert report.approvals.oldest_seconds_by_type["scripted"] >= 0
        verdicts = {h.agent_id: h for h in report.verdicts()}
        assert fine.id not in verdicts and report.counted["recorder"] == 1
        assert verdicts[ailing.id].status == HealthStatus.UNHEALTHY
        assert verdicts[ailing.id].reasons == ["failing health check(s): upstream"]

        assert verdicts[broken.id].status == HealthStatus.UNHEALTHY
        assert "the agent failed" in verdicts[broken.id].reasons

        status = await eventually(
            lambda: aiops.agents.status(pager.id), lambda s: s.counters.events_processed >= 2
        )
        # Alert deliveries are at least once: a retried one arrives with the same event id and is
        # deduplicated by the alerting agent, so it is not a second alert.
        received = status.counters.events_received - status.counters.events_deduplicated
        assert received == 2 and status.counters.events_processed == 2, (
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
        # fine was observed while it initialized (0); counted since, it gets no new reading.
        assert health[ailing.id] == 2 and health.get(fine.id, 0) == 0
        waiting = {labels["agent_type"]: v for labels, v in series(text, "aiops_pending_approvals")}
        assert waiting["scripted"] == 1
        alerts = [
            v for labels, v in series(text, "aiops_health_alerts_total") if labels["status"] == "unhealthy"
        ]
        assert sorted(alerts) == [1, 1], "one alert per agent type (ailing, init_fails)"

        # The agent recovers: one more transition, one more alert.
        await aiops.config.apply(ailing.model_copy(update={"settings": {"upstream_ok": True}}), author="sre")
        verdicts = {h.agent_id: h for h in (await check()).verdicts()}
        assert verdicts[ailing.id].status == HealthStatus.HEALTHY
        await aiops.approvals.reject(pending, "bob", "not now")
        await eventually(lambda: aiops.agents.status(pager.id), lambda s: s.counters.events_received == 3)


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
        await aiops.agents.start(fine)
        _, pending, _ = await start_pending_action(aiops, agent_config("scripted", approval=team()), "high")
        report = await eventually(lambda: check(clients["A"]), lambda r: r.counted.get("recorder") == 1)
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
        assert health == [], "counted healthy: no per-agent series"
        for text in (a, b):
            for line in text.splitlines():
                if line.startswith("aiops_"):
                    assert "service_name=" not in line, line
        await aiops.approvals.reject(pending, "bob", "not now")


# ----- the fleet from visibility: summaries, queues, and closer looks only where needed -------------


def health_of(description: WorkflowExecutionDescription) -> str | None:
    return description.typed_search_attributes.get(sa.HEALTH)


async def published_health(aiops: AiopsClient, agent_id: str) -> str | None:
    return health_of(await aiops.agents.handle(agent_id).describe())


async def health_upserts(aiops: AiopsClient, agent_id: str) -> list[str | None]:
    """The ``AiopsHealth`` value of each search-attribute upsert in the agent's history (None: the
    upsert did not carry it, like the SDK's ``TemporalChangeVersion`` upserts of patches)."""
    history = await aiops.agents.handle(agent_id).fetch_history()
    values: list[str | None] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            values.append(json.loads(fields[sa.HEALTH.name].data) if sa.HEALTH.name in fields else None)
    return values


async def activities_run(client: Client, workflow_id: str) -> Counter[str]:
    """The activities in a workflow's history, by type: scheduled ones and local ones (markers)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    found: Counter[str] = Counter()
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            found[e.activity_task_scheduled_event_attributes.activity_type.name] += 1
        elif e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            data = e.marker_recorded_event_attributes.details["data"].payloads[0].data
            found["local " + json.loads(data)["activity_type"]] += 1
    return found


async def telemetry_client(env: WorkflowEnvironment) -> tuple[Telemetry, Client]:
    telemetry = create_telemetry()
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
    )
    return telemetry, client


def status_queries(telemetry: Telemetry) -> float:
    text = generate_latest(telemetry.registry).decode()
    return sum(v for _, v in series(text, "aiops_health_status_queries_total"))


async def test_a_healthy_fleet_is_judged_from_visibility_without_a_status_query_per_agent(
    env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    telemetry, client = await telemetry_client(env)
    aiops = AiopsClient(client, task_queue, pool)
    fleet = [agent_config("recorder") for _ in range(12)]
    async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
        for config in fleet:
            await aiops.agents.start(config)
        for config in fleet:
            await eventually(lambda c=config: published_health(aiops, c.id), lambda h: h == "ok")
        ids = {c.id for c in fleet}
        workflow_id = f"health-{uuid.uuid4()}"

        async def check() -> MonitorReport:
            nonlocal workflow_id
            workflow_id = f"health-{uuid.uuid4()}"
            return await client.execute_workflow(
                HealthMonitorWorkflow.run,
                MonitorInput(task_queue=task_queue),
                id=workflow_id,
                task_queue=task_queue,
            )

        report = await eventually(check, lambda r: r.counted == {"recorder": len(fleet)})
        assert report.verdicts() == [] and report.observed == 0, "counted healthy: not even listed"
        assert status_queries(telemetry) == 0, "no agent was asked for its status"
        # No status query, no health check, not even a per-type question: this worker has the type.
        assert await activities_run(client, workflow_id) == Counter(
            [
                "local triage_fleet",
                "local summarize_approvals",
                "local report_unreported_ends",
                "local record_health",
            ]
        )
        # Healthy and never anything else: no row, no per-agent series (the alerts fire on 1 and 2).
        rows = await pool.fetchval(
            "SELECT count(*) FROM health_snapshots WHERE agent_id = ANY($1::text[])", list(ids)
        )
        assert rows == 0
        text = generate_latest(telemetry.registry).decode()
        assert not ids & {labels["agent_id"] for labels, _ in series(text, "aiops_agent_health")}


async def test_agents_that_need_a_look_are_still_found_unhealthy(
    env: WorkflowEnvironment, task_queue: str, pool: asyncpg.Pool
) -> None:
    """An open breaker (its summary says so), a failing check (its type has a hook), a worker that
    went away (nobody polls its queue), an agent whose worker never came (no summary, no answer)."""
    LEDGER.clear()
    telemetry, client = await telemetry_client(env)
    aiops = AiopsClient(client, task_queue, pool)
    breaker = agent_config(
        "scripted",
        retry={"initial_interval_seconds": 0.1, "maximum_interval_seconds": 0.2, "maximum_attempts": 5},
        approval={**team().model_dump(), "circuit_breaker_failures": 1},
    )
    ailing, fine = agent_config("ailing"), agent_config("recorder")
    fast = HealthThresholds(status_timeout_seconds=2)

    async def check(queue: str, **fields: object) -> MonitorReport:
        monitor = MonitorInput(task_queue=queue, thresholds=fast, **fields)
        return await client.execute_workflow(
            HealthMonitorWorkflow.run, monitor, id=f"health-{uuid.uuid4()}", task_queue=task_queue
        )

    # A worker of its own that then goes away, leaving two running agents with an "ok" summary.
    gone_queue = f"tq-{uuid.uuid4()}"
    gone = AiopsClient(client, gone_queue, pool)
    orphans = [agent_config("recorder") for _ in range(2)]
    async with build_worker(client, gone_queue, AgentActivities(client=client), pool=pool):
        for config in orphans:
            await gone.agents.start(config)
        for config in orphans:
            await eventually(lambda c=config: published_health(gone, c.id), lambda h: h == "ok")
    # An agent whose workflow no worker ever ran: no state, no summary.
    never_queue = f"tq-{uuid.uuid4()}"
    never = agent_config("recorder")
    await client.start_workflow(
        AgentWorkflow.run,
        AgentWorkflowInput(config=never),
        id=agent_workflow_id(never.id),
        task_queue=never_queue,
    )

    async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
        for config in (breaker, ailing, fine):
            await aiops.agents.start(config)
        e = event("alert", risk="low", fatal=True)
        await aiops.events.send(breaker.id, e)
        await eventually(
            lambda: published_health(aiops, breaker.id), lambda h: h == "action_failures,circuit_open"
        )
        await eventually(lambda: published_health(aiops, fine.id), lambda h: h == "ok")

        report = await eventually(
            lambda: check(task_queue),
            lambda r: (
                {breaker.id, ailing.id} <= {h.agent_id for h in r.verdicts()}
                and r.counted.get("recorder") == 1
            ),
        )
        verdicts = {h.agent_id: h for h in report.verdicts()}
        assert verdicts[breaker.id].status == HealthStatus.UNHEALTHY
        assert any("circuit breaker is open" in r for r in verdicts[breaker.id].reasons)
        assert verdicts[ailing.id].status == HealthStatus.UNHEALTHY
        assert verdicts[ailing.id].reasons == ["failing health check(s): upstream"]
        assert fine.id not in verdicts, "healthy by its summary: counted"
        observed = {h.agent_id for h in report.agents}
        assert {breaker.id, ailing.id} <= observed and fine.id not in observed

        before = status_queries(telemetry)
        # The hooks queues fall silent first (their pollers stop first): until the workflow queue
        # is silent too, the agents are judged by their types' queues instead.
        report = await eventually(
            lambda: check(gone_queue, worker_silence_seconds=1),
            lambda r: (
                {h.agent_id for h in r.verdicts() if h.status == HealthStatus.UNHEALTHY}
                == {o.id for o in orphans}
                and all(any("no worker serves task queue" in x for x in h.reasons) for h in r.verdicts())
            ),
        )
        assert report.observed == 0 and status_queries(telemetry) == before, "judged from the queue's pollers"
        reasons = {r for h in report.verdicts() for r in h.reasons}
        assert any(f"no worker serves task queue {gone_queue}" in r for r in reasons), reasons
        # A worker serves the queue again: the agents are listed as recoveries, healthy, and alerted.
        async with build_worker(client, gone_queue, AgentActivities(client=client), pool=pool):
            report = await check(gone_queue)
            recovered = {h.agent_id: h.status for h in report.verdicts()}
            assert recovered == dict.fromkeys((o.id for o in orphans), HealthStatus.HEALTHY)
            assert report.alerts == 2 and report.observed == 0
            again = await check(gone_queue)
            assert again.verdicts() == [] and again.counted == {"recorder": 2}, "counted once recovered"

        report = await check(never_queue)
        [verdict] = report.verdicts()
        assert verdict.agent_id == never.id and verdict.status == HealthStatus.UNHEALTHY
        assert "no heartbeat" in verdict.reasons[0]
        assert report.observed == 1
    for agent_id in [never.id, *(o.id for o in orphans)]:
        await client.get_workflow_handle(agent_workflow_id(agent_id)).terminate("test over")


async def test_the_health_summary_is_upserted_only_when_it_changes(aiops: AiopsClient, worker) -> None:
    config = agent_config(
        "scripted",
        retry={"initial_interval_seconds": 0.1, "maximum_interval_seconds": 0.2, "maximum_attempts": 5},
        approval={**team().model_dump(), "circuit_breaker_failures": 2},
    )
    await aiops.agents.start(config)
    await eventually(lambda: published_health(aiops, config.id), lambda h: h == "ok")
    at_start = await health_upserts(aiops, config.id)
    assert [h for h in at_start if h] == ["ok"], "published once, with the agent's state"
    for _ in range(5):
        e = event("alert", risk="low")
        await aiops.events.send(config.id, e)
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 5)
    after = await health_upserts(aiops, config.id)
    assert [h for h in after if h] == ["ok"], "five decisions and actions: no health upsert"
    # Only the SDK's TemporalChangeVersion upsert of a patch's marker (the first action started
    # from the worker, workflows/action_launch.py), once per run.
    assert after[: len(at_start)] == at_start and after[len(at_start) :] in ([], [None])
    at_start = after

    for _ in range(2):
        e = event("alert", risk="low", fatal=True)
        await aiops.events.send(config.id, e)
        await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, e.id))
    await eventually(
        lambda: published_health(aiops, config.id), lambda h: h == "action_failures,circuit_open"
    )
    await aiops.agents.reset_circuit_breaker(config.id, by="alice")
    await eventually(lambda: published_health(aiops, config.id), lambda h: h == "action_failures")
    # 5 of 6 succeeded (83%) flags action_failures; the second failure opens the breaker; the reset closes it.
    assert await health_upserts(aiops, config.id) == [
        *at_start,
        "action_failures",
        "action_failures,circuit_open",
        "action_failures",
    ]
