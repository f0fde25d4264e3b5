"""Record the health-summary and health-monitor histories: ``python -m tests.record_monitor_histories``.

Like ``tests/record_histories.py`` (whose policy holds: the current generation, a new PREFIX
only beside a patched change; recorded files are never overwritten), for the agent's health
summary (``AiopsHealth``, upserted on change) and a monitor pass that reads the fleet from
visibility. Files go to ``tests/histories/`` with the prefix (default ``g1_``);
``tests/test_replay.py`` replays every one of them.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from temporalio.client import Client

import tests.support.agents_for_tests  # noqa: F401
from aiops.client import AiopsClient
from aiops.contracts import search_attributes as sa
from aiops.contracts.agent import agent_workflow_id
from aiops.contracts.health import HealthThresholds
from tests.helpers import agent_config, event, eventually, team
from tests.record_histories import recorder_main
from workflows.health_monitor import HealthMonitorWorkflow, MonitorInput

HISTORIES = Path(__file__).parent / "histories"
FAST_RETRY = {"initial_interval_seconds": 0.1, "maximum_interval_seconds": 0.2, "maximum_attempts": 5}


async def save(client: Client, prefix: str, name: str, workflow_id: str) -> None:
    path = HISTORIES / f"{prefix}{name}.json"
    if path.exists():
        raise SystemExit(f"{path} exists: recorded histories are never overwritten; use a new prefix")
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


async def health(aiops: AiopsClient, agent_id: str) -> str | None:
    return (await aiops.agents.handle(agent_id).describe()).typed_search_attributes.get(sa.HEALTH)


async def record(aiops: AiopsClient, prefix: str) -> None:
    client = aiops.client
    # An agent whose summary changes: ok, then a failed action opens the breaker, then a reset.
    breaker = agent_config(
        "scripted",
        id="replay-health",
        retry=FAST_RETRY,
        approval={**team().model_dump(), "circuit_breaker_failures": 1},
    )
    await aiops.agents.start(breaker)
    good = event("alert", risk="low", id="h-1")
    await aiops.events.send(breaker.id, good)
    await aiops.approvals.wait_for_action(aiops.approvals.action_id(breaker.id, good.id))
    bad = event("alert", risk="low", fatal=True, id="h-2")
    await aiops.events.send(breaker.id, bad)
    await eventually(lambda: health(aiops, breaker.id), lambda h: h == "action_failures,circuit_open")

    # A monitor pass: a healthy agent counted by its summary, a type with a real health check, the
    # open breaker, an agent that failed to start, and the alerting agent told of each.
    fine, ailing, pager = agent_config("recorder"), agent_config("ailing"), agent_config("recorder")
    broken = agent_config("init_fails")
    for config in (fine, ailing, pager, broken):
        # the broken one past the client's config check, to reach its failing start
        await aiops.agents.start(config, require_worker=config is not broken)
    await eventually(lambda: health(aiops, fine.id), lambda h: h == "ok")
    monitor = MonitorInput(
        task_queue=aiops.task_queue,
        alert_agent_id=pager.id,
        thresholds=HealthThresholds(status_timeout_seconds=5),
    )
    expected = {ailing.id, broken.id, breaker.id}  # fine is counted (ok summary), not listed

    async def check() -> tuple[str, set[str], dict[str, int]]:
        workflow_id = f"replay-monitor-{uuid.uuid4()}"
        report = await client.execute_workflow(
            HealthMonitorWorkflow.run, monitor, id=workflow_id, task_queue=aiops.task_queue
        )
        return workflow_id, {h.agent_id for h in report.verdicts()}, report.counted

    monitor_id, _, _ = await eventually(check, lambda r: r[1] == expected and r[2] == {"recorder": 1})
    await save(client, prefix, "monitor_pass", monitor_id)

    await aiops.agents.reset_circuit_breaker(breaker.id, by="alice")
    await eventually(lambda: health(aiops, breaker.id), lambda h: h == "action_failures")
    await aiops.agents.stop(breaker.id, reason="recorded")
    await aiops.agents.handle(breaker.id).result()
    await save(client, prefix, "agent_health_summary", agent_workflow_id(breaker.id))


if __name__ == "__main__":
    sys.exit(recorder_main(record, "g1_"))
