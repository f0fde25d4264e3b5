"""Record a monitor pass that tells an agent of an action terminated by hand:
``python -m tests.record_unreported_ends_history [PREFIX]`` (default ``patched_``: a patched path is
recorded beside the generation, docs/deploy.md).

Like ``tests/record_histories.py`` (whose policy holds: recorded files are never overwritten), for
the path ``workflow.patched("report-unreported-action-ends")`` guards (workflows/health_monitor.py):
a scripted agent's action waits for approval, is terminated, and a monitor pass reports its end to
the agent, which counts it failed. ``tests/test_replay.py`` replays it with the rest.
"""

from __future__ import annotations

import sys
import uuid

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.record_histories import recorder_main, unrecorded
from workflows.health_monitor import HealthMonitorWorkflow, MonitorInput, MonitorReport


async def record(aiops: AiopsClient, prefix: str) -> None:
    path = unrecorded(prefix, "monitor_unreported_ends")
    config = agent_config("scripted", id="replay-unreported", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high")
    await aiops.client.get_workflow_handle(action_id).terminate("ended by hand")
    workflow_id = ""

    async def check() -> MonitorReport:
        nonlocal workflow_id
        workflow_id = f"replay-monitor-{uuid.uuid4()}"
        return await aiops.client.execute_workflow(
            HealthMonitorWorkflow.run,
            MonitorInput(task_queue=aiops.task_queue),
            id=workflow_id,
            task_queue=aiops.task_queue,
        )

    await eventually(check, lambda r: action_id in r.unreported_ends.action_ids)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.actions_failed == 1)
    history = await aiops.client.get_workflow_handle(workflow_id).fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


if __name__ == "__main__":
    sys.exit(recorder_main(record, "patched_"))
