"""Several worker processes on one task queue share the work and lose none of it."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.agent_activities import AgentActivities
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.agent import AgentState
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer
from tests.support.processes import worker_process


async def test_two_worker_processes_share_agents_and_actions(
    aiops: AiopsClient, address: str, task_queue: str, postgres: PostgresServer
):
    with (
        worker_process(address, task_queue, "worker-a", postgres.url),
        worker_process(address, task_queue, "worker-b", postgres.url),
    ):
        configs = [agent_config("recorder") for _ in range(6)]
        events = {c.id: [event(act=True) for _ in range(5)] for c in configs}
        await asyncio.gather(*(aiops.events.send_many(c.id, events[c.id], config=c) for c in configs))
        for c in configs:
            status = await eventually(
                lambda c=c: aiops.agents.status(c.id), lambda s: s.counters.actions_succeeded == 5, within=60
            )
            assert status.counters.events_processed == 5
            assert status.counters.actions_proposed == 5

        identities = set()
        for c in configs:
            for e in events[c.id]:
                handle = aiops.approvals.action_handle(aiops.approvals.action_id(c.id, e.id))
                async for h in handle.fetch_history_events():
                    if h.event_type == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                        identities.add(h.activity_task_started_event_attributes.identity)
        assert identities == {"worker-a", "worker-b"}


async def test_worker_pools_with_different_agent_types_share_one_task_queue(
    client: Client, address: str, task_queue: str, pool: asyncpg.Pool
) -> None:
    """A worker without an agent's type never runs its code, and never fails its actions."""
    LEDGER.clear()
    other = await Client.connect(address, data_converter=pydantic_data_converter)  # as another process
    plain = AgentActivities(client=client, agent_types=["example"])  # the README's worker
    mine = AgentActivities(client=other, agent_types=["recorder", "example"])  # + my agents
    aiops = AiopsClient(client, task_queue, pool)
    async with (
        build_worker(client, task_queue, plain, pool=pool, identity="plain"),
        build_worker(other, task_queue, mine, pool=pool, identity="mine"),
    ):
        config = agent_config("recorder")
        await aiops.agents.start(config)
        events = [event(act=True) for _ in range(12)]
        for e in events:  # one at a time: workflow tasks land on both workers
            await aiops.events.send(config.id, e)
        for e in events:
            record = await aiops.approvals.wait_for_action(
                aiops.approvals.action_id(config.id, e.id), appear_within=30
            )
            assert record.status == ActionStatus.SUCCEEDED, record.error
        # An end is counted once the agent has confirmed it with the action's record (a moment later).
        status = await eventually(
            lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == len(events)
        )
        assert status.state == AgentState.RUNNING and status.counters.decision_errors == 0
        assert status.counters.actions_succeeded == len(events) and status.recent_errors == []
        assert plain.instances.cached(config.id) is None  # no recorder code ever ran on "plain"
        assert mine.instances.cached(config.id) is not None
        assert sorted(LEDGER["executed"]) == sorted(
            aiops.approvals.action_id(config.id, e.id) for e in events
        )
        await aiops.agents.stop(config.id)
