"""A published ``backlog`` flag is held for ``BACKLOG_HOLD`` before it may clear (a busy agent's
queue swings across the summary's level within every workflow task, and each crossing was an
upsert); ``backlog`` itself is published at once, and nothing waits on the hold's timer."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from aiops.client import AiopsClient
from aiops.contracts import search_attributes as sa
from aiops.contracts.health_summary import QUEUE_LENGTH
from tests.helpers import agent_config, event, eventually
from workflows.agent.health import BACKLOG_HOLD, BACKLOG_HOLD_PATCH, holds_backlog


def test_only_a_dropped_backlog_flag_is_held() -> None:
    assert holds_backlog("backlog", "ok")
    assert holds_backlog("backlog,errors", "errors")  # the other flags as they were
    assert not holds_backlog("backlog", "errors")  # something else changed: published at once
    assert not holds_backlog("backlog,errors", "ok")
    assert not holds_backlog("errors", "ok")  # no backlog published: nothing to hold
    assert not holds_backlog("ok", "backlog")  # a backlog is never held back
    assert not holds_backlog(None, "ok")


async def published(aiops: AiopsClient, agent_id: str) -> str | None:
    return (await aiops.agents.handle(agent_id).describe()).typed_search_attributes.get(sa.HEALTH)


async def test_a_drained_backlog_clears_after_the_hold_and_the_agent_goes_on(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("recorder")
    await aiops.agents.start(config)
    await eventually(lambda: published(aiops, config.id), lambda h: h == "ok")
    await aiops.agents.pause(config.id)
    backlog = [event() for _ in range(QUEUE_LENGTH + 1)]
    await aiops.events.send_many(config.id, backlog)
    await eventually(lambda: published(aiops, config.id), lambda h: h == "backlog")
    await aiops.agents.resume(config.id)
    await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == len(backlog)
    )
    hold_seconds = BACKLOG_HOLD.total_seconds()
    await eventually(lambda: published(aiops, config.id), lambda h: h == "ok", within=hold_seconds + 30)

    history = await aiops.agents.handle(config.id).fetch_history()
    steps: list[tuple[str, object]] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if sa.HEALTH.name in fields:
                steps.append(("health", json.loads(fields[sa.HEALTH.name].data)))
        elif e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timeout = e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            steps.append(("timer", timeout))
        elif e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            steps.append(("fired", None))
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = e.marker_recorded_event_attributes.details
            if BACKLOG_HOLD_PATCH.encode() in b"".join(p.data for d in details.values() for p in d.payloads):
                steps.append(("patch", None))
    # The queue drained within the hold: no "ok" until the hold's timer fired (the resume's own
    # upsert of every attribute repeats "backlog": the queue was full then).
    hold = steps.index(("patch", None))
    assert [value for kind, value in steps[:hold] if kind == "health"][-1] == "backlog", steps
    assert [kind for kind, _ in steps[hold:]] == ["patch", "timer", "fired", "health"], steps
    held = steps[hold + 1][1]
    assert isinstance(held, timedelta) and timedelta(0) < held <= BACKLOG_HOLD
    assert steps[-1] == ("health", "ok")

    more = event()
    await aiops.events.send(config.id, more)
    await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == len(backlog) + 1
    )
