"""Record actions on the path ``workflow.patched("publish-executing-after-dispatch")`` guards
(workflows/action/execution.py): ``python -m tests.record_publish_after_dispatch_history [PREFIX]``
(default ``patched_``: a patched path is recorded beside the generation, docs/deploy.md).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten):

* ``action_publish_after_dispatch``: an action of the scripted agent (with a dry run) waits for two
  approvals; the first is published at once; the second, which completes the quorum, is published
  with ``executing`` in the task ``execute_dispatched``'s completion brings, while execute still
  runs (held until the inbox shows it);
* ``action_planned_here``: an auto-approved action of the same agent, planned in a local
  activity in its first task, which upserts ``planning`` anyway: ``executing`` goes with its own
  upsert and no ``execute_dispatched`` runs.

``tests/test_replay.py`` replays them with the rest of the generation.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts import search_attributes as sa
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, event, eventually, start_pending_action, team
from tests.record_histories import recorder_main, unrecorded

NAMES = ("action_publish_after_dispatch", "action_planned_here")


async def record(aiops: AiopsClient, prefix: str) -> None:
    for name in NAMES:  # refuse before recording anything
        unrecorded(prefix, name)
    config = agent_config("scripted", id="replay-publish-after-dispatch", approval=team())
    with tempfile.TemporaryDirectory() as folder:
        release = Path(folder) / "release"
        _, action_id, _ = await start_pending_action(aiops, config, "critical", hold_until=str(release))
        await aiops.approvals.approve(action_id, "alice")
        await aiops.approvals.approve(action_id, "carol")
        handle = aiops.client.get_workflow_handle(action_id)
        await eventually(
            handle.describe, lambda d: d.typed_search_attributes.get(sa.ACTION_STATUS) == "executing"
        )
        release.touch()
        record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == ActionStatus.VERIFIED, record.status
    await save(aiops, prefix, NAMES[0], action_id)
    low = event("alert", risk="low")
    await aiops.events.send(config.id, low)
    quick = aiops.approvals.action_id(config.id, low.id)
    assert (await aiops.approvals.wait_for_action(quick)).status == ActionStatus.VERIFIED
    await save(aiops, prefix, NAMES[1], quick)


async def save(aiops: AiopsClient, prefix: str, name: str, workflow_id: str) -> None:
    history = await aiops.client.get_workflow_handle(workflow_id).fetch_history()
    path = unrecorded(prefix, name)
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "patched_"))
