"""The ``service`` agent against a real Debian ``supervisor`` running a loopback ``http.server``.

The web server is killed behind supervisord's back (``autorestart=false``, so it stays down); the
agent detects it, restarts it over supervisord's XML-RPC API and verifies it answers again. Restarts
per window are bounded (beyond the limit a person must approve), and a worker killed in the middle of
a restart does not make supervisord spawn the program twice (counted in supervisord's own log).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import agents.builtin  # noqa: F401  (registers the built-in agents)
from agents import AgentAction, AgentConfig, SystemEvent
from agents.builtin.service import ServiceAgent
from agents.secrets import resolve_secrets
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.models import AutomationLevel, EventType, RiskLevel
from tests.helpers import agent_config, eventually, team, wait_pending
from tests.support.postgres_server import PostgresServer
from tests.support.processes import worker_process
from tests.support.supervisor import USERNAME, Supervisor, SupervisorUnavailable


def start_supervisor(startsecs: int = 0) -> Supervisor:
    try:
        return Supervisor(startsecs=startsecs).start()
    except SupervisorUnavailable as err:
        pytest.skip(f"Debian's supervisor is needed for the service agent's tests: {err}")


@pytest.fixture
def sv() -> Iterator[Supervisor]:
    supervisor = start_supervisor()
    try:
        yield supervisor
    finally:
        supervisor.stop()


def settings(sv: Supervisor, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "supervisor": {"url": sv.url},
        "services": [
            {"name": "web", "health_url": sv.health_url, "grace_seconds": 0, "health_timeout_seconds": 1}
        ],
        "state_dir": str(tmp_path / "state"),
        "verify_timeout_seconds": 20,
        **overrides,
    }


def config_for(sv: Supervisor, tmp_path: Path, **overrides: Any) -> AgentConfig:
    extra = {k: overrides.pop(k) for k in list(overrides) if k in ("automation_level", "approval", "retry")}
    return agent_config("service", settings=settings(sv, tmp_path, **overrides), **extra)


async def running_agent(config: AgentConfig) -> ServiceAgent:
    agent = ServiceAgent(resolve_secrets(config))  # as a worker builds it: secret references resolved
    await agent.initialize()
    await agent.start()
    return agent


async def decided(agent: ServiceAgent, event: SystemEvent) -> AgentAction:
    action = await agent.process_event(event)
    assert action is not None
    return action.model_copy(update={"id": f"action-{agent.agent_id}:{event.id}", "event_id": event.id})


# ----- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"supervisor": {"url": "ftp://host/RPC2"}}, "settings.supervisor.url: must look like unix:///"),
        (
            {"supervisor": {"url": "unix://relative.sock"}},
            "a unix socket URL is unix:// and an absolute path",
        ),
        ({"supervisor": {"url": "http://u:p@127.0.0.1:9001/RPC2"}}, "not in the URL"),
        ({"supervisor": {"url": "http://127.0.0.1:99999/RPC2"}}, "the port is not a number"),
        (
            {"supervisor": {"url": "unix:///run/s.sock", "password": "env:PW"}},
            "settings.supervisor.username: is required with a password",
        ),
        ({"supervisor": {"url": "unix:///run/s.sock", "host": "x"}}, "settings.supervisor.host: unknown"),
        ({"services": []}, "settings.services: List should have at least 1"),
        (
            {"services": [{"name": "web; rm -rf /"}]},
            "settings.services[0].name: must be a supervisor program name",
        ),
        (
            {"services": [{"name": "web", "health_url": "file:///etc/passwd"}]},
            "settings.services[0].health_url: must look like http",
        ),
        (
            {"services": [{"name": "web", "expect_status": 99999}]},
            "settings.services[0].expect_status: Input should be less than or equal to 599",
        ),
        ({"services": [{"name": "web"}, {"name": "web"}]}, "settings.services: lists a program twice"),
        ({"max_restarts": 10**9}, "settings.max_restarts: Input should be less than or equal to 100"),
        ({"max_restarts": 2.5}, "settings.max_restarts: Input should be a valid integer"),
        (
            {"restart_window_seconds": 1e300},
            "settings.restart_window_seconds: Input should be less than or equal",
        ),
        (
            {"verify_timeout_seconds": 0},
            "settings.verify_timeout_seconds: Input should be greater than or equal to 1",
        ),
        ({"escalation_risk": "low"}, "settings.escalation_risk: must be one of high, critical"),
        ({"risk_when_down": "none"}, "settings.risk_when_down: Input should be 'low'"),
        ({"restart_stopped": "yes"}, "settings.restart_stopped: Input should be a valid boolean"),
        ({"state_dir": "/"}, "settings.state_dir: '/' is a system directory"),
        ({"state_dir": "relative/dir"}, "settings.state_dir: 'relative/dir' is not an absolute path"),
        (
            {"colour": "blue"},
            "settings.colour: unknown setting for the service agent (known: supervisor, services,",
        ),
    ],
)
def test_hostile_settings_are_refused_with_a_clear_message(change: dict[str, Any], message: str) -> None:
    base = {"supervisor": {"url": "unix:///run/supervisor.sock"}, "services": [{"name": "web"}]}
    config = agent_config("service", settings={**base, **change})
    problems = ServiceAgent(agent_config("service", settings=base)).validate_config(config)
    assert any(message in p for p in problems), problems


def test_a_literal_password_is_refused_before_the_agent_sees_it() -> None:
    with pytest.raises(ValidationError, match=r"settings.supervisor.password: a secret must be a reference"):
        agent_config("service", settings={"supervisor": {"username": "u", "password": "hunter2"}})


# ----- hooks, called directly ------------------------------------------------------------------------------


async def test_detect_finds_a_dead_or_hung_server_with_ids_stable_per_occurrence(
    sv: Supervisor, tmp_path: Path
) -> None:
    agent = await running_agent(config_for(sv, tmp_path))
    assert await agent.detect() == []
    assert (await agent.health_check()).healthy

    sv.kill()
    (down,) = await agent.detect()
    assert (down.type, down.data["kind"], down.data["state"]) == (EventType.HEALTH_CHECK, "down", "EXITED")
    assert [e.id for e in await agent.detect()] == [down.id]

    sv.rpc().supervisor.startProcess("web", True)
    sv.wait_for(sv.healthy)
    pid = sv.pid()
    os.kill(pid, signal.SIGSTOP)  # running, as far as supervisord knows, but not answering
    try:
        (hung,) = await agent.detect()
        assert (hung.data["kind"], hung.data["state"]) == ("unhealthy", "RUNNING")
        assert "timed out" in hung.data["health"] and hung.id != down.id
        action = await decided(agent, hung)
        assert action.risk_level == RiskLevel.MEDIUM  # a restart interrupts what it serves
        plan = await agent.plan(action)
        assert plan is not None and plan.changes == [
            "supervisor.stopProcess('web', wait=True)",
            "supervisor.startProcess('web', wait=True)",
        ]
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_inet_socket_with_a_password_from_an_env_reference(
    sv: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOPS_TEST_SUPERVISOR_PASSWORD", sv.password)
    credentials = {"url": sv.inet_url, "username": USERNAME, "password": "env:AIOPS_TEST_SUPERVISOR_PASSWORD"}
    agent = await running_agent(config_for(sv, tmp_path, supervisor=credentials))
    assert (await agent.health_check()).checks == {
        "supervisord reachable": True,
        "web known to supervisord": True,
    }

    monkeypatch.setenv("AIOPS_TEST_SUPERVISOR_PASSWORD", "wrong")
    refused = await running_agent(config_for(sv, tmp_path, supervisor=credentials))
    assert (await refused.health_check()).checks == {"supervisord reachable": False}
    with pytest.raises(Exception, match="refused the credentials") as err:
        await refused.detect()
    assert sv.password not in str(err.value)


async def test_restart_is_idempotent_by_action_id(sv: Supervisor, tmp_path: Path) -> None:
    agent = await running_agent(config_for(sv, tmp_path))
    sv.kill()
    (event,) = await agent.detect()
    action = await decided(agent, event)
    assert action.risk_level == RiskLevel.LOW  # starting what is down
    plan = await agent.plan(action)
    assert plan is not None and plan.changes == ["supervisor.startProcess('web', wait=True)"]
    assert "EXITED" in plan.summary and "0 (limit 3)" in plan.details

    result = await agent.execute_action(action)
    assert result.success and result.data["restarted"]
    assert await agent.verify(action, result) and sv.healthy()
    assert sv.spawns() == 2
    assert await agent.execute_action(action) == result  # a retry: the recorded answer, no restart
    assert sv.spawns() == 2
    assert await agent.rollback(action) is None  # a restart cannot be undone


async def test_restarts_are_bounded_and_escalate_to_a_person(sv: Supervisor, tmp_path: Path) -> None:
    agent = await running_agent(config_for(sv, tmp_path, max_restarts=1))
    sv.kill()
    (first,) = await agent.detect()
    early = await decided(agent, first)
    also_early = early.model_copy(update={"id": early.id + "-twin"})  # decided before any restart ran
    assert not early.parameters["escalated"] and early.risk_level == RiskLevel.LOW
    assert (await agent.execute_action(early)).success

    sv.kill()
    refused = await agent.execute_action(also_early)  # the limit was reached since its decision
    assert not refused.success and "reached the limit" in refused.message
    assert sv.state() == "EXITED" and sv.spawns() == 2

    (second,) = await agent.detect()
    escalated = await decided(agent, second)
    assert escalated.parameters["escalated"] and escalated.risk_level == RiskLevel.HIGH
    assert "restart limit reached: 1 restart(s)" in escalated.description
    plan = await agent.plan(escalated)
    assert plan is not None and "ESCALATED" in plan.details
    result = await agent.execute_action(escalated)  # once a person approved it
    assert result.success and await agent.verify(escalated, result) and sv.healthy()


async def test_an_alert_for_a_watched_program_becomes_a_restart(sv: Supervisor, tmp_path: Path) -> None:
    agent = await running_agent(config_for(sv, tmp_path))

    def alert(status: str, program: str) -> SystemEvent:
        return SystemEvent(type="alert", source="am", data={"status": status, "labels": {"program": program}})

    action = await agent.process_event(alert("firing", "web"))
    assert action is not None and action.parameters["service"] == "web"
    assert await agent.process_event(alert("resolved", "web")) is None
    assert await agent.process_event(alert("firing", "database")) is None
    # Healthy again by the time it runs: nothing is restarted.
    action = action.model_copy(update={"id": "action-x:alert-1"})
    result = await agent.execute_action(action)
    assert result.success and not result.data["restarted"] and sv.spawns() == 1


# ----- through the framework ---------------------------------------------------------------------------


async def test_a_killed_server_is_detected_restarted_and_verified_then_escalated(
    aiops: AiopsClient, worker, sv: Supervisor, tmp_path: Path
) -> None:
    config = config_for(sv, tmp_path, max_restarts=1, approval=team())
    detector = await running_agent(config)
    await aiops.agents.start(config)

    sv.kill()
    events = await detector.detect()
    await aiops.events.send_many(config.id, events)
    first = aiops.approvals.action_id(config.id, events[0].id)
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(first), 60)  # low risk: runs on its own
    assert record.status == ActionStatus.VERIFIED, record.error
    assert record.plan is not None and record.plan.changes == ["supervisor.startProcess('web', wait=True)"]
    assert sv.healthy() and sv.spawns() == 2

    sv.kill()  # again, within the window: beyond the limit a person decides
    events = await detector.detect()
    await aiops.events.send_many(config.id, events)
    second = aiops.approvals.action_id(config.id, events[0].id)
    pending = await wait_pending(aiops, second)
    assert (
        pending.action.risk_level == RiskLevel.HIGH and "restart limit reached" in pending.action.description
    )
    assert sv.state() == "EXITED"
    await aiops.approvals.approve(second, "bob", "flapping; restart once more while I look")
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(second), 60)
    assert record.status == ActionStatus.VERIFIED, record.error
    assert sv.healthy() and sv.spawns() == 3


@pytest.mark.slow
async def test_a_worker_killed_mid_restart_does_not_restart_twice(
    aiops: AiopsClient, address: str, task_queue: str, tmp_path: Path, postgres: PostgresServer
) -> None:
    sv = start_supervisor(startsecs=2)  # startProcess waits 2 s: time to kill the worker mid-call
    try:
        config = config_for(
            sv,
            tmp_path,
            automation_level=AutomationLevel.FULL_AUTO,
            retry={
                "initial_interval_seconds": 0.1,
                "heartbeat_timeout_seconds": 1.0,
                "start_to_close_timeout_seconds": 60,
            },
        )
        sv.kill()
        events = await (await running_agent(config)).detect()
        action_id = aiops.approvals.action_id(config.id, events[0].id)
        modules = {"AIOPS_AGENT_MODULES": "tests.support.agents_for_tests,agents.builtin"}
        with worker_process(address, task_queue, "doomed", postgres.url, **modules) as doomed:
            await aiops.events.send_many(config.id, events, config=config)

            async def state() -> str | None:
                return await asyncio.to_thread(sv.state)

            await eventually(state, lambda s: s == "STARTING", within=30, interval=0.05)
            os.kill(doomed.pid, signal.SIGKILL)  # in the middle of startProcess
            doomed.wait()
        assert ServiceAgent(config).ledger.lookup(action_id).intent is not None  # the intent was recorded
        with worker_process(address, task_queue, "survivor", postgres.url, **modules):
            record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
        assert record.status == ActionStatus.VERIFIED, record.error
        assert (
            record.result is not None and "an earlier attempt had already restarted" in record.result.message
        )
        assert sv.healthy() and sv.spawns() == 2  # the first spawn, and exactly one restart
        attempts = [r for r in await aiops.audit.rows(action_id=action_id) if r.step == "execution_attempt"]
        assert len(attempts) == 2
    finally:
        sv.stop()
