"""Worker Versioning: a worker that serves one build of a deployment runs agents once it is current;
runs are pinned to their build, and an agent moves to a newer one when it continues as new."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from temporalio.client import Client

from activities.agent_activities import AgentActivities
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.config import AgentVerb
from aiops.runtime.worker_build import build_worker, versioned_deployment
from tests.conftest import TEMPORAL_BIN
from tests.helpers import agent_config, event, eventually


async def set_current(address: str, deployment: str, build_id: str) -> None:
    """Make the build current; retried until the server has seen the worker poll."""
    for _ in range(100):
        process = await asyncio.create_subprocess_exec(
            TEMPORAL_BIN, "worker", "deployment", "set-current-version", "--address", address,
            "--deployment-name", deployment, "--build-id", build_id, "--yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"could not make {deployment}/{build_id} current: {out.decode()}")


async def test_a_versioned_worker_runs_agents_on_its_build(
    client: Client, address: str, task_queue: str, pool: asyncpg.Pool
) -> None:
    deployment = f"aiops-test-{uuid.uuid4().hex[:8]}"
    worker = build_worker(
        client, task_queue, AgentActivities(client=client), pool=pool,
        deployment=versioned_deployment(deployment, "1.4.0"),
    )  # fmt: skip
    async with worker:
        await set_current(address, deployment, "1.4.0")
        aiops = AiopsClient(client, task_queue, pool)
        config = agent_config("example")
        await aiops.agents.start(config)
        drift = event("infrastructure_drift", severity="low")
        await aiops.events.send(config.id, drift)
        record = await aiops.approvals.wait_for_action(
            aiops.approvals.action_id(config.id, drift.id), appear_within=30
        )
        assert record.status == ActionStatus.SUCCEEDED
        described = await aiops.agents.handle(config.id).describe()
        versioning = described.raw_description.workflow_execution_info.versioning_info
        assert versioning.deployment_version.deployment_name == deployment
        assert versioning.deployment_version.build_id == "1.4.0"
        assert versioning.behavior == 1  # PINNED: a run stays on its build (docs/deploy.md)
        action = await aiops.approvals.action_handle(record.action.id).describe()
        assert action.raw_description.workflow_execution_info.versioning_info.behavior == 1

        # A new build made current: the agent's run stays on 1.4.0 until it continues as new;
        # the upgrade command does that now, and the next run starts on 1.5.0, state kept.
        newer = build_worker(
            client, task_queue, AgentActivities(client=client), pool=pool,
            deployment=versioned_deployment(deployment, "1.5.0"),
        )  # fmt: skip
        async with newer:
            await set_current(address, deployment, "1.5.0")
            assert await build_of(aiops, config.id) == "1.4.0"
            applied = await aiops.agents.command(config.id, AgentVerb.UPGRADE)
            assert applied.changed
            await eventually(lambda: build_of(aiops, config.id), lambda b: b == "1.5.0")
            status = await aiops.agents.status(config.id)
            assert status.run_number == 2 and status.counters.events_processed == 1
            await aiops.agents.stop(config.id)
            await aiops.agents.handle(config.id).result()


async def build_of(aiops: AiopsClient, agent_id: str) -> str:
    described = await aiops.agents.handle(agent_id).describe()
    return str(described.raw_description.workflow_execution_info.versioning_info.deployment_version.build_id)
