"""Record an approved action that shows ``executing`` a task after execute is dispatched:
``python -m tests.record_publish_after_dispatch_history [PREFIX]`` (default ``patched_``: a patched
path is recorded beside the generation, docs/deploy.md).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten), for
the path ``workflow.patched("publish-executing-after-dispatch")`` guards
(workflows/action/execution.py): an action of the scripted agent (with a dry run) waits for two
approvals; the first is published at once, the second, which completes the quorum, in the task
``execute_dispatched``'s completion brings, with ``executing``. ``tests/test_replay.py`` replays it
with the rest of the generation.
"""

from __future__ import annotations

import sys

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, start_pending_action, team
from tests.record_histories import recorder_main, unrecorded


async def record(aiops: AiopsClient, prefix: str) -> None:
    path = unrecorded(prefix, "action_publish_after_dispatch")
    config = agent_config("scripted", id="replay-publish-after-dispatch", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "critical")
    await aiops.approvals.approve(action_id, "alice")
    await aiops.approvals.approve(action_id, "carol")
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.VERIFIED, record.status
    history = await aiops.client.get_workflow_handle(action_id).fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "patched_"))
