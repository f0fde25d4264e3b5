"""A raw signal storm makes the agent decide by a regular activity on its own task queue, and
every run of it replays (docs/budgets-and-priority.md, "A signal storm faster than the agent's
workflow tasks").

The storm rule reads only the history's length at a task's start (workflows/agent/decisions.py):
this test checks that a real storm trips it (batches decided by ``decide_events`` scheduled on
the workflow's own queue, started at once by the same worker), that each event is decided once
(the hook too: an activity's result is a history event, which a force-closed task cannot lose),
and that the histories replay against today's code with the Replayer. With the rule turned off
(``STORM_EVENTS`` above any growth) it fails at the first assertion on how batches were decided.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.contracts.agent import agent_workflow_id
from bench.storm_replay import check
from tests.helpers import agent_config, eventually, signal_storm
from tests.support.agents_for_tests import LEDGER

EVENTS = 3000
IN_FLIGHT = 100
# What a storm may do to the agent's tasks and nothing else: the server force-closes a task past
# 100 buffered signals, or refuses a completion that raced a signal. Any other cause (a
# nondeterminism, the deadlock detector) fails the test.
EXPECTED_FAILURES = {
    "WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND",
    "WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND",
}


@pytest.mark.allow_failed_workflow_tasks(
    reason="raw signals in flight may outrun a task: the server force-closes it past 100 buffered "
    "signals; the test asserts those are the only failures, and that every run replays"
)
async def test_a_raw_signal_storm_is_decided_by_regular_activities_once_each_and_replays(
    aiops: AiopsClient, client: Client, worker: object
) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    handle = client.get_workflow_handle(agent_workflow_id(config.id))
    prefix = f"storm-{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i}" for i in range(EVENTS)]
    await signal_storm(handle, ids, IN_FLIGHT)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed >= EVENTS, within=120
    )
    assert status.counters.events_processed == EVENTS
    assert status.counters.events_rejected == 0, status.recent_rejections

    replay = await check(client, [handle.id])
    assert replay.decided_by["storm"] > 0, f"the storm rule never tripped: {replay.summary()}"
    assert not replay.failures, "\n".join(replay.failures)
    assert set(replay.task_failures) <= EXPECTED_FAILURES, replay.summary()
    # Each event decided; its hook may have run twice only in a batch decided locally before the
    # rule saw the storm, in a task the server then force-closed (a local activity's result lives
    # in the task's completion). A batch decided by activity has its result in history: once.
    decided = [d for d in LEDGER["decided"] if d.startswith(prefix)]
    assert set(decided) == set(ids), "each event decided"
    if not replay.task_failures:
        assert sorted(decided) == sorted(ids), f"each hook ran once: {replay.summary()}"
