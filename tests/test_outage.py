"""A PostgreSQL outage delays audit rows and config changes; it loses and fails nothing.

The test stops and restarts a real PostgreSQL of its own (not the session's)
while an agent keeps working: events are processed, actions approved and
executed, a config change waits; when the server returns every pending row
lands exactly once and the change completes.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.client import Client

from activities.agent_activities import AgentActivities
from activities.database.pool import open_pool
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.runtime.worker_build import build_worker
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

LOW_RISK_STEPS = ["decision", "execution_attempt", "execution_result", "verification", "action_finished"]


async def test_nothing_is_lost_or_failed_while_postgres_is_down(client: Client, task_queue: str) -> None:
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    pool = await open_pool(server.url)
    try:
        async with build_worker(client, task_queue, AgentActivities(client=client), pool=pool):
            aiops = AiopsClient(client, task_queue, pool)
            config = agent_config("scripted", approval=team())
            _, pending_id, _ = await start_pending_action(aiops, config, "high")

            await asyncio.to_thread(server.stop)
            low = [event("alert", risk="low") for _ in range(4)]
            await aiops.events.send_many(config.id, low)
            await aiops.approvals.approve(pending_id, "alice", "approved during the outage")
            applying = asyncio.create_task(
                aiops.config.apply(config.model_copy(update={"name": "renamed"}), author="bob")
            )
            status = await eventually(
                lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 5
            )
            assert status.state == "running"
            record = await eventually(
                lambda: aiops.approvals.action(pending_id), lambda r: r.status == ActionStatus.VERIFIED
            )
            assert record.approvals[0].approver == "alice"
            await asyncio.sleep(3)  # let the audit and config activities fail and retry a few times
            assert not applying.done(), "the config change waits for the database"

            await asyncio.to_thread(server.start)
            applied = await asyncio.wait_for(applying, 90)
            assert applied.version == 2
            action_ids = [pending_id, *(aiops.approvals.action_id(config.id, e.id) for e in low)]
            finals = [await asyncio.wait_for(aiops.approvals.wait_for_action(a), 90) for a in action_ids]
            assert all(f.status == ActionStatus.VERIFIED for f in finals)

            rows = await eventually(
                lambda: aiops.audit.rows(agent_id=config.id),
                lambda rs: (
                    sum(r.step == "event_received" for r in rs) == 5
                    and any(r.step == "config_changed" for r in rs)
                ),
                within=60,
            )
            for action_id in action_ids[1:]:
                assert [r.step for r in rows if r.action_id == action_id] == LOW_RISK_STEPS
            pending_steps = [r.step for r in rows if r.action_id == pending_id]
            assert pending_steps == ["decision", "approval", *LOW_RISK_STEPS[1:]]
            assert not [k for k, n in Counter(r.key for r in rows).items() if n > 1]
            [report] = await aiops.audit.verify(config.id)
            assert report.ok
            status = await aiops.agents.status(config.id)
            assert (
                status.state == "running"
                and status.config_version == 2
                and status.counters.decision_errors == 0
            )
    finally:
        await pool.close()
        await asyncio.to_thread(server.close)
