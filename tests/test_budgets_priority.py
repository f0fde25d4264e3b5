"""Critical work first: an action's workflow (and the activities that inherit it) carries a
task-queue priority by its risk."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.contracts.activities import EventDecision
from aiops.contracts.agent import SUBMIT_EVENT, AgentRunState, agent_workflow_id
from aiops.contracts.models import EventType, RiskLevel, SystemEvent
from tests.helpers import agent_config, event, eventually, team
from tests.support.agents_for_tests import LEDGER
from workflows.action_launch import PRIORITY_BY_RISK, action_priority
from workflows.agent.event_intake import EventIntake, QueueFull, event_size


def test_priority_follows_risk() -> None:
    keys = [
        action_priority(r).priority_key or 0
        for r in (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW)
    ]
    assert keys == sorted(keys) and keys[0] == 1 and len(set(keys)) == 4
    assert set(PRIORITY_BY_RISK) == set(RiskLevel)


async def test_actions_are_started_with_their_risks_priority(
    aiops: AiopsClient, client: Client, worker: object
) -> None:
    for risk in ("critical", "low"):  # the low one runs on its own, the critical one waits
        config = agent_config("scripted", approval=team())
        await aiops.agents.start(config)
        sent = event("alert", risk=risk)
        await aiops.events.send(config.id, sent)
        action_id = aiops.approvals.action_id(config.id, sent.id)
        handle = client.get_workflow_handle(action_id)
        described = await eventually(handle.describe, bool)
        priority = described.raw_description.workflow_execution_info.priority
        assert priority.priority_key == PRIORITY_BY_RISK[RiskLevel(risk)]


def _intake(batch_size: int = 3) -> tuple[EventIntake, AgentRunState]:
    state = AgentRunState(config=agent_config("scripted", runtime={"batch_size": batch_size}))
    state.subscribed_event_types = [EventType.ALERT]
    return EventIntake(state), state


def _take(intake: EventIntake, event_id: str, severity: str) -> None:
    payload = {"id": event_id, "type": "alert", "source": "s", "severity": severity}
    intake.take(payload, datetime.now(UTC))


def test_the_queue_is_decided_by_severity_first_come_first_within_one() -> None:
    intake, state = _intake()
    for i in range(4):
        _take(intake, f"low-{i}", "low")
    _take(intake, "info-0", "info")
    _take(intake, "high-0", "high")
    _take(intake, "critical-0", "critical")
    _take(intake, "high-1", "high")
    batch, _ = intake.next_batch()
    assert [e.id for e in batch] == ["critical-0", "high-0", "high-1"]
    # A graver event that comes in while a batch is decided goes before it; settling takes off
    # exactly the decided events, not the queue's head.
    _take(intake, "critical-1", "critical")
    intake.settle(batch, [], [EventDecision(event_id=e.id) for e in batch])
    rest = [e.id for e in state.queue]
    assert rest == ["critical-1", "low-0", "low-1", "low-2", "low-3", "info-0"]
    assert intake.queue_bytes == sum(event_size(e) for e in state.queue)


def test_a_carried_queue_in_arrival_order_is_put_in_severity_order() -> None:
    """A queue a run of older code carried (arrival order) is sorted once, stably."""
    state = AgentRunState(config=agent_config("scripted"))
    now = datetime.now(UTC)
    for event_id, severity in [("a", "low"), ("b", "critical"), ("c", "low"), ("d", "critical")]:
        state.queue.append(
            SystemEvent(id=event_id, type="alert", source="s", severity=severity, timestamp=now)
        )
    intake = EventIntake(state)
    assert [e.id for e in state.queue] == ["b", "d", "a", "c"]
    _take(intake, "e", "critical")  # the counts per severity were rebuilt with the sort
    assert [e.id for e in state.queue] == ["b", "d", "e", "a", "c"]


async def test_a_critical_event_is_decided_before_the_low_ones_queued_before_it(
    aiops: AiopsClient, worker: object
) -> None:
    """Paused, the agent queues 60 low events, then a high and a critical one; resumed, it decides
    the critical one first, then the high one, then the lows in the order they came."""
    config = agent_config("recorder", runtime={"batch_size": 1})
    await aiops.agents.start(config)
    await aiops.agents.pause(config.id)
    prefix = f"prio-{uuid.uuid4().hex[:8]}"
    lows = [event("alert", id=f"{prefix}-low-{i}", severity="low") for i in range(60)]
    await aiops.events.send_many(config.id, lows)
    await aiops.events.send(config.id, event("alert", id=f"{prefix}-high", severity="high"))
    await aiops.events.send(config.id, event("alert", id=f"{prefix}-critical", severity="critical"))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.queue_length == 62)
    await aiops.agents.resume(config.id)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 62)
    decided = [d for d in LEDGER["decided"] if d.startswith(prefix)]
    assert decided == [f"{prefix}-critical", f"{prefix}-high", *(e.id for e in lows)]


def test_a_full_queue_makes_room_for_a_graver_event_and_keeps_the_displaced_one() -> None:
    state = AgentRunState(config=agent_config("scripted", runtime={"max_queue": 3}))
    intake = EventIntake(state)
    for i in range(3):
        _take(intake, f"low-{i}", "low")
    with pytest.raises(QueueFull):  # no graver than what waits: the overflow keeps it
        _take(intake, "low-3", "low")
    assert intake.takes_graver([{"id": "c", "severity": "critical"}])
    assert not intake.takes_graver([{"id": "l", "severity": "low"}, {"id": "c", "severity": "critical"}])
    assert not intake.takes_graver([{"id": "x", "severity": ["critical"]}])  # hostile: refused, not raised
    _take(intake, "critical-0", "critical")
    assert [e.id for e in state.queue] == ["critical-0", "low-0", "low-1"]
    assert [d["id"] for d in intake.displaced] == ["low-2"]  # the newest of the least grave
    assert "low-2" not in state.seen_event_ids  # its hand-back is taken as new, not a duplicate
    assert state.counters.events_received == 3  # counted when it comes back
    assert intake.queue_bytes == sum(event_size(e) for e in state.queue)


async def test_a_critical_signal_into_a_full_queue_is_decided_first_and_nothing_twice(
    aiops: AiopsClient, client: Client, worker: object
) -> None:
    """Paused, with room for 20: 40 low events by signal (20 wait in the overflow), then a critical
    one, which takes the place of the newest low (sent to the overflow). Resumed: the critical one
    is decided first, and each of the 41 exactly once."""
    config = agent_config("recorder", runtime={"batch_size": 1, "max_queue": 20})
    await aiops.agents.start(config)
    await aiops.agents.pause(config.id)
    handle = client.get_workflow_handle(agent_workflow_id(config.id))
    prefix = f"full-{uuid.uuid4().hex[:8]}"
    lows = [f"{prefix}-low-{i}" for i in range(40)]
    for event_id in lows:
        await handle.signal(SUBMIT_EVENT, {"id": event_id, "type": "alert", "source": "s", "severity": "low"})
    critical = f"{prefix}-critical"
    await handle.signal(
        SUBMIT_EVENT, {"id": critical, "type": "alert", "source": "s", "severity": "critical"}
    )
    await eventually(
        lambda: aiops.agents.status(config.id),
        lambda s: s.queue_length == 20 and s.counters.events_spilled == 21,
    )
    await aiops.agents.resume(config.id)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 41, within=120
    )
    decided = [d for d in LEDGER["decided"] if d.startswith(prefix)]
    assert decided[0] == critical
    assert sorted(decided) == sorted([critical, *lows]), "each decided exactly once"
    assert status.counters.events_rejected == 0 and status.counters.events_received == 41
