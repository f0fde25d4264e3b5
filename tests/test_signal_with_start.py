"""Reaching an agent: signal-with-start starts it once, however many starters race."""

from __future__ import annotations

import asyncio

from aiops.client import AiopsClient
from aiops.contracts.agent import agent_workflow_id
from tests.helpers import agent_config, event, eventually


async def test_event_for_an_agent_that_is_not_running_starts_it(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    await aiops.events.send(config.id, event(), config=config)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1
    )
    assert status.agent_id == config.id


async def test_racing_starters_make_one_agent(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    events = [event() for _ in range(10)]
    await asyncio.gather(
        *(aiops.events.send(config.id, e, config=config) for e in events),
        *(aiops.agents.start(config) for _ in range(5)),
    )
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 10
    )
    assert status.run_number == 1
    runs = [w async for w in aiops.client.list_workflows(f"WorkflowId = '{agent_workflow_id(config.id)}'")]
    assert len(runs) == 1


async def test_a_stopped_agent_is_started_again_by_the_next_event(aiops: AiopsClient, worker) -> None:
    config = agent_config("recorder")
    handle = await aiops.agents.start(config)
    await aiops.agents.stop(config.id)
    await handle.result()
    await aiops.events.send(config.id, event(), config=config)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1
    )
    assert status.state.value == "running"
