"""Scheduled detectors: one Schedule per agent, kept in line with its lifecycle and config."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import ScheduleIntervalSpec
from temporalio.service import RPCError, RPCStatusCode

from activities.detector_activities import detector_schedule_id
from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from tests.helpers import agent_config, eventually
from tests.support.agents_for_tests import LEDGER


async def schedule_interval(aiops: AiopsClient, agent_id: str) -> timedelta | None:
    try:
        described = await aiops.client.get_schedule_handle(detector_schedule_id(agent_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    spec = described.schedule.spec.intervals[0]
    assert isinstance(spec, ScheduleIntervalSpec)
    return spec.every


async def test_a_detector_schedule_follows_the_agent_and_delivers_what_it_finds(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config(
        "watching", settings={"finding": "disk-full"}, runtime={"detect_every_seconds": 3600}
    )
    await aiops.agents.start(config)
    assert await eventually(lambda: schedule_interval(aiops, config.id), bool) == timedelta(hours=1)

    # A tick (triggered now rather than waited for) delivers the finding; a second tick finds the
    # same condition again and the agent drops it as a duplicate: one action, executed once.
    handle = aiops.client.get_schedule_handle(detector_schedule_id(config.id))
    await handle.trigger()
    action_id = aiops.approvals.action_id(config.id, f"found-{config.id}-disk-full")
    assert (
        await aiops.approvals.wait_for_action(action_id, appear_within=30)
    ).status == ActionStatus.SUCCEEDED
    await handle.trigger()
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.events_deduplicated == 1, within=30
    )
    assert status.counters.actions_proposed == 1 and LEDGER["executed"] == [action_id]

    # A config change moves the schedule; stopping the agent removes it.
    changed = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"detect_every_seconds": 60})}
    )
    await aiops.config.apply(changed, author="alice")
    await eventually(lambda: schedule_interval(aiops, config.id), lambda every: every == timedelta(minutes=1))
    await aiops.agents.stop(config.id)
    await eventually(lambda: schedule_interval(aiops, config.id), lambda every: every is None)


async def test_an_agent_without_an_interval_or_a_detector_gets_no_schedule(
    aiops: AiopsClient, worker
) -> None:
    quiet = agent_config("watching", settings={"finding": "x"})  # a detector, but no interval
    plain = agent_config("recorder", runtime={"detect_every_seconds": 60})  # an interval, no detector
    for config in (quiet, plain):
        await aiops.agents.start(config)
        await eventually(lambda c=config: aiops.agents.status(c.id), lambda s: s.state.value == "running")
        assert await schedule_interval(aiops, config.id) is None
