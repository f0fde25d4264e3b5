"""Record an action started showing ``executing`` (``aiops.contracts.action_start.status_at_start``):
``python -m tests.record_started_executing_history [PREFIX]`` (default ``g1_``, the current
generation: no patch guards this path, the action's start attributes do).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten): an
action that runs at once, started by its agent's worker with the ``executing`` status, so its first
task publishes nothing before execute. ``tests/test_replay.py`` replays it with the rest, and the
generation's ``action_auto`` covers actions started ``proposed``.
"""

from __future__ import annotations

import sys

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, event
from tests.record_histories import recorder_main, unrecorded


async def record(aiops: AiopsClient, prefix: str) -> None:
    path = unrecorded(prefix, "action_started_executing")
    config = agent_config("recorder", id="replay-started-executing")
    await aiops.agents.start(config)
    at_once = event(act=True)
    await aiops.events.send(config.id, at_once)
    action_id = aiops.approvals.action_id(config.id, at_once.id)
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.SUCCEEDED, record.status
    history = await aiops.client.get_workflow_handle(action_id).fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "g1_"))
