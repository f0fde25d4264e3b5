"""The ``ansible`` agent against real ansible-core, through ansible-runner, on temp files.

The fixture playbook (tests/fixtures/ansible/site.yml) keeps two files under a temp
directory as declared; its handler appends to ``applied.log`` on every real run that
changed something, so a test counts how often the playbook really applied.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

import agents.builtin  # noqa: F401  (registers the built-in agent types)
from agents import AgentConfig
from agents.base_agent import BaseAgent
from agents.registry import default_factory
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, event, team, wait_pending

if importlib.util.find_spec("ansible_runner") is None or importlib.util.find_spec("ansible") is None:
    pytest.skip("the ansible agent needs PyPI ansible-runner and ansible-core", allow_module_level=True)

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "ansible"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """The managed files, drifted: an old message and no config file."""
    root = tmp_path / "target"
    root.mkdir()
    (root / "motd.txt").write_text("welcome to v1\n")
    return root


def applied(root: Path) -> list[str]:
    log = root / "applied.log"
    return log.read_text().split() if log.exists() else []


def ansible_config(target: Path, tmp_path: Path, **settings: Any) -> AgentConfig:
    return agent_config(
        "ansible",
        approval=team(),
        retry={"maximum_attempts": 3, "initial_interval_seconds": 0.2},
        settings={
            "playbook": str(FIXTURES / "site.yml"),
            "extra_vars": {"target_dir": str(target), "app_version": "v2"},
            "private_data_dir": str(tmp_path / "runner"),
            **settings,
        },
    )


async def running_agent(config: AgentConfig) -> BaseAgent:
    agent = default_factory.create(config)
    await agent.initialize()
    await agent.start()
    return agent


async def test_drift_is_checked_approved_applied_once_and_verified(
    aiops: AiopsClient, worker, target: Path, tmp_path: Path
) -> None:
    config = ansible_config(target, tmp_path)
    agent = await running_agent(config)
    (drift,) = await agent.detect()
    assert drift.data["changed_tasks"] == ["localhost: Message of the day", "localhost: Listen port"]
    assert applied(target) == [] and (target / "motd.txt").read_text() == "welcome to v1\n"  # check only

    await aiops.events.send_many(config.id, [drift], config=config)
    action_id = aiops.approvals.action_id(config.id, drift.id)
    pending = await wait_pending(aiops, action_id)  # medium risk: semi_auto asks a person
    assert pending.action.risk_level == "medium"
    assert pending.plan is not None
    assert pending.plan.details.startswith("# ansible check sha256:")
    assert "-welcome to v1\n+welcome to v2" in pending.plan.details
    assert "+port=8080" in pending.plan.details
    assert pending.plan.changes == drift.data["changed_tasks"]
    # The plan's diff is the detected one: its digest names the event, so a repeat is deduplicated.
    assert pending.plan.details.splitlines()[0].split(":")[1].split()[0] == drift.data["diff_sha256"]
    assert drift.id == f"ansible-drift-{drift.data['diff_sha256'][:32]}"

    await aiops.approvals.approve(action_id, "alice", "roll out v2's message")
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.VERIFIED, record.error
    assert (target / "motd.txt").read_text() == "welcome to v2\n"
    assert (target / "app.conf").read_text() == "port=8080\n"
    assert applied(target) == ["applied"]

    # A retry of the finished execute answers from its record and runs nothing again.
    again = await agent.execute_action(
        record.action.model_copy(
            update={"parameters": {**record.action.parameters, "approved_plan": record.plan.model_dump()}}
        )
    )
    assert again == record.result
    assert applied(target) == ["applied"]


async def test_a_diff_that_changed_after_approval_is_refused(target: Path, tmp_path: Path) -> None:
    agent = await running_agent(ansible_config(target, tmp_path))
    action = await agent.process_event(event(source="config-scanner"))  # drift reported from outside
    assert action is not None
    plan = await agent.plan(action)
    assert plan is not None
    (target / "motd.txt").write_text(
        "someone edited this by hand\n"
    )  # the diff is no longer the approved one
    approved = action.model_copy(
        update={"parameters": {**action.parameters, "approved_plan": plan.model_dump()}}
    )
    with pytest.raises(Exception, match="the pending changes differ from the approved diff"):
        await agent.execute_action(approved)
    assert applied(target) == [] and not (target / "app.conf").exists()


async def test_rollback_runs_the_rollback_playbook_once(target: Path, tmp_path: Path) -> None:
    config = ansible_config(target, tmp_path, rollback_playbook=str(FIXTURES / "rollback.yml"))
    agent = await running_agent(config)
    action = await agent.process_event(event(source="config-scanner"))
    assert action is not None
    plan = await agent.plan(action)
    assert plan is not None
    approved = action.model_copy(
        update={"parameters": {**action.parameters, "approved_plan": plan.model_dump()}}
    )
    result = await agent.execute_action(approved)
    assert result.success and (target / "motd.txt").read_text() == "welcome to v2\n"
    undone = await agent.rollback(approved)
    assert undone is not None and undone.success
    assert (target / "motd.txt").read_text() == "welcome to v1\n"
    assert await agent.rollback(approved) == undone  # idempotent by the action id
    assert (await agent.health_check()).checks == {
        "ansible-playbook installed": True,
        "playbook readable": True,
    }
    assert await agent.process_event(event(playbook="/etc/other.yml")) is None


def test_bad_settings_are_refused_with_clear_messages() -> None:
    agent = default_factory.agent_class("ansible")
    config = agent_config(
        "ansible",
        settings={
            "playbook": "site.yml",
            "tags": "web",
            "risk_level": "whatever",
            "timeout_seconds": 0,
            "extra_vars": ["x"],
            "playbok": "/typo.yml",
        },
    )
    text = "\n".join(agent(config).validate_config(config))
    assert "settings.playbok: unknown setting for the ansible agent (known: playbook," in text
    assert "settings.playbook: 'site.yml' is not an absolute path" in text
    assert "settings.tags: Input should be a valid list" in text
    assert "settings.risk_level: Input should be 'low', 'medium', 'high' or 'critical'" in text
    assert "settings.timeout_seconds: Input should be greater than or equal to 1" in text
    assert "settings.extra_vars: Input should be a valid dictionary" in text
    missing = agent_config("ansible")
    assert agent(missing).validate_config(missing) == [
        "settings.playbook: is required: the absolute path of the playbook to keep applied"
    ]
    absent = agent_config(
        "ansible", settings={"playbook": "/nonexistent/site.yml", "rollback_playbook": str(FIXTURES)}
    )
    assert agent(absent).validate_config(absent) == [
        "settings.playbook: /nonexistent/site.yml is not a file on this worker",
        f"settings.rollback_playbook: {FIXTURES} is not a file on this worker",
    ]
    with pytest.raises(ValueError, match="a secret must be a reference"):
        agent_config("ansible", settings={"playbook": "/p.yml", "extra_vars": {"api_token": "abc"}})
