"""Record a storm's history: ``python -m tests.record_storm_history [PREFIX]`` (default
``patched_``: a patched path is recorded beside the generation, docs/deploy.md).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten), for
the path ``workflow.patched("decide-storm-by-activity")`` guards (workflows/agent/decisions.py):
a paused agent takes 40 raw signals, and when it resumes the history has grown by more than
``STORM_EVENTS`` since its last batch, so the first batch is decided by a regular activity on the
agent's own task queue (after the patch marker); the next tasks grow by less than
``CALM_EVENTS`` and go back to local activities. Deterministic (no race with a real storm) and
small. ``tests/test_replay.py`` replays it with the rest of the generation.
"""

from __future__ import annotations

import sys

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts import agent as agent_contract
from aiops.contracts.agent import agent_workflow_id
from tests.helpers import agent_config, event, eventually
from tests.record_histories import recorder_main, unrecorded


async def record(aiops: AiopsClient, prefix: str) -> None:
    path = unrecorded(prefix, "agent_storm")
    config = agent_config("recorder", id="replay-storm", runtime={"batch_size": 10})
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    await aiops.agents.pause(config.id)
    handle = aiops.agents.handle(config.id)
    for n in range(40):
        await handle.signal(agent_contract.SUBMIT_EVENT, event(id=f"s-{n}"))
    await aiops.agents.resume(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 40)
    await aiops.agents.stop(config.id)
    await handle.result()
    history = await aiops.client.get_workflow_handle(agent_workflow_id(config.id)).fetch_history()
    queue = history.events[0].workflow_execution_started_event_attributes.task_queue.name
    by_activity = [
        e
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "decide_events"
        and e.activity_task_scheduled_event_attributes.task_queue.name == queue
    ]
    if not by_activity:
        raise SystemExit("the storm rule did not trip: nothing recorded")
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events, {len(by_activity)} storm decision(s))")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "patched_"))
