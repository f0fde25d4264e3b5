"""Keeping each agent's detector schedule in line with its lifecycle and config.

One Temporal Schedule per agent (``aiops-detector-<agent id>``) starts
``DetectorWorkflow`` every ``runtime.detect_every_seconds``; overlapping runs are
skipped. The agent workflow calls ``sync_detector`` when it starts, after each
config switch and when it stops, so the schedule is created, updated or removed
idempotently: calling it again with the same config changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules import every_interval, upsert_schedule
from aiops.contracts import agent as agent_contract
from aiops.contracts.activities import DetectorInput, DetectorSchedule


def detector_schedule_id(agent_id: str) -> str:
    return f"aiops-detector-{agent_id}"


def detector_workflow_id(agent_id: str) -> str:
    return f"detect-{agent_id}"


class DetectorActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def sync_detector(self, call: DetectorSchedule) -> str | None:
        """Create, update or remove the schedule; return its id while it exists."""
        agent_id = call.config.id
        sid = detector_schedule_id(agent_id)
        every = call.config.runtime.detect_every_seconds
        if not call.active or every is None:
            try:
                await self.client.get_schedule_handle(sid).delete()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            return None
        schedule = every_interval(
            agent_contract.DETECTOR_WORKFLOW_TYPE,
            DetectorInput(config=call.config, agent_workflow_id=call.agent_workflow_id),
            workflow_id=detector_workflow_id(agent_id),
            task_queue=call.task_queue,
            every=timedelta(seconds=every),
            timeout=max(timedelta(seconds=every * 3), timedelta(minutes=5)),
        )
        return await upsert_schedule(self.client, sid, schedule)

    def all(self) -> list[Callable[..., Any]]:
        return [self.sync_detector]
