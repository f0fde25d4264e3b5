"""Creating or updating a Temporal Schedule idempotently, the one way the framework keeps schedules.

Used for the health monitor's schedule (one per task queue) and each agent's detector schedule:
calling it again with other settings updates the schedule in place; with the same settings it
changes nothing that matters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)


def every_interval(
    workflow: Any, arg: Any, *, workflow_id: str, task_queue: str, every: timedelta, timeout: timedelta
) -> Schedule:
    """A schedule that starts ``workflow(arg)`` every ``every``, skipping a tick while the previous
    run is still going (a slow check never piles up behind itself), each run bounded by ``timeout``."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow, arg, id=workflow_id, task_queue=task_queue, execution_timeout=timeout
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def upsert_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create the schedule, or bring an existing one up to ``schedule``; return its id."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id
