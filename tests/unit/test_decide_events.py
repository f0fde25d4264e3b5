"""The decision activity's answer: every event decided once, compact or full, whatever its hook does.

Run with Temporal's ``ActivityEnvironment`` (the activity alone, no server): a hook that returns
nothing, an action, raises, or returns something that is no action.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.agent_activities import AgentActivities
from activities.agent_instances import AgentInstances
from agents.base_agent import BaseAgent
from agents.registry import AgentFactory
from aiops.contracts.activities import DecideEventsInput, DecideEventsResult, every_decision
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import ActionResult, AgentAction, EventType, SystemEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Picky(BaseAgent):
    """Quiet for most events; ``act`` proposes, ``boom`` raises, ``junk`` returns no action."""

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        kind = event.data.get("kind")
        if kind == "boom":
            raise RuntimeError("the hook broke")
        if kind == "junk":
            return "not an action"  # type: ignore[return-value]
        if kind == "act":
            return AgentAction(id="", agent_id=self.agent_id, type="restart_service", description="fix")
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True)

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]


def decide(compact: bool) -> tuple[list[SystemEvent], DecideEventsResult]:
    factory = AgentFactory()
    factory.register("picky", Picky)
    activities = AgentActivities(AgentInstances(factory))
    config = AgentConfig(id="picky-1", name="picky", type="picky")
    kinds = ["quiet", "act", "boom", "quiet", "junk", "quiet"]
    events = [
        SystemEvent(id=f"e{i}", type="alert", source="unit", timestamp=NOW, data={"kind": kind})
        for i, kind in enumerate(kinds)
    ]
    request = DecideEventsInput(config=config, events=events, compact=compact)
    result: Any = asyncio.run(ActivityEnvironment().run(activities.decide_events, request))
    return events, result


@pytest.mark.parametrize("compact", [False, True])
def test_every_event_is_decided_once_in_either_form(compact: bool) -> None:
    events, result = decide(compact)
    assert result.compact == compact
    named = [d.event_id for d in result.decisions]
    assert named == (["e1", "e2", "e4"] if compact else [e.id for e in events])
    decisions = every_decision(events, result)
    assert [d.event_id for d in decisions] == [e.id for e in events]
    outcome = {d.event_id: (d.action is not None, d.error) for d in decisions}
    assert outcome["e0"] == outcome["e3"] == outcome["e5"] == (False, None)
    assert outcome["e1"] == (True, None)
    assert outcome["e2"] == (False, "RuntimeError: the hook broke")
    junk = outcome["e4"]  # a hook's wrong answer is that event's error, not the batch's
    assert junk[0] is False and junk[1] is not None and "ValidationError" in junk[1]
