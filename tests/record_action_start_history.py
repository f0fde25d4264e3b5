"""Record an agent starting actions from its worker: ``python -m tests.record_action_start_history
[PREFIX]`` (default ``patched_``: a patched path is recorded beside the generation, docs/deploy.md).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten), for
the path ``workflow.patched("start-actions-from-worker")`` guards (workflows/action_launch.py): a
recorder agent takes three events that each propose an action, and starts each action from its
worker's client in a local activity (``start_action``) instead of as a child; the same event sent
again is deduplicated. ``tests/test_replay.py`` replays it with the rest of the generation.
"""

from __future__ import annotations

import sys

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts.agent import agent_workflow_id
from tests.helpers import agent_config, event, eventually
from tests.record_histories import recorder_main, unrecorded


async def record(aiops: AiopsClient, prefix: str) -> None:
    path = unrecorded(prefix, "agent_action_start")
    config = agent_config("recorder", id="replay-action-start")
    await aiops.agents.start(config)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    events = [event(id=f"a-{n}", act=True) for n in range(3)]
    for e in events:
        await aiops.events.send(config.id, e)
    await aiops.events.send(config.id, events[0])  # again: deduplicated, no second action
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_succeeded == 3)
    await aiops.agents.stop(config.id)
    await aiops.agents.handle(config.id).result()
    history = await aiops.client.get_workflow_handle(agent_workflow_id(config.id)).fetch_history()
    text = history.to_json()
    children = [
        e for e in history.events if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    if children or not any(e.HasField("marker_recorded_event_attributes") for e in history.events):
        raise SystemExit("the actions were not started from the worker: nothing recorded")
    path.write_text(text)
    print(f"recorded {path.name} ({len(history.events)} events)")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "patched_"))
