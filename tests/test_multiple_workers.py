"""Several worker processes on one task queue share the work and lose none of it."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import EventType as HistoryEventType

from aiops.client import AiopsClient
from tests.helpers import agent_config, event, eventually
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
        await asyncio.gather(*(aiops.send_events(c.id, events[c.id], config=c) for c in configs))
        for c in configs:
            status = await eventually(
                lambda c=c: aiops.status(c.id), lambda s: s.counters.actions_succeeded == 5, within=60
            )
            assert status.counters.events_processed == 5
            assert status.counters.actions_proposed == 5

        identities = set()
        for c in configs:
            for e in events[c.id]:
                handle = aiops.action_handle(aiops.action_id(c.id, e.id))
                async for h in handle.fetch_history_events():
                    if h.event_type == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                        identities.add(h.activity_task_started_event_attributes.identity)
        assert identities == {"worker-a", "worker-b"}
