"""The health monitor's Temporal Schedule, created or updated idempotently.

One schedule per task queue (``aiops-health-monitor-<task queue>``) starts
``HealthMonitorWorkflow`` every interval; overlapping runs are skipped, so a
slow check never piles up. Workers call ``ensure_health_schedule`` at start
(``--health-every``); running it again with other settings updates the
schedule in place.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, Schedule

from activities.schedules import every_interval, upsert_schedule
from workflows.health_monitor import HealthMonitorWorkflow, MonitorInput


def schedule_id(task_queue: str) -> str:
    return f"aiops-health-monitor-{task_queue}"


def _schedule(every: timedelta, monitor: MonitorInput) -> Schedule:
    return every_interval(
        HealthMonitorWorkflow.run,
        monitor,
        workflow_id=f"health-monitor-{monitor.task_queue}",
        task_queue=monitor.task_queue,
        every=every,
        timeout=max(every * 5, timedelta(minutes=5)),
    )


async def ensure_health_schedule(client: Client, every: timedelta, monitor: MonitorInput) -> str:
    """Create the schedule, or bring an existing one up to these settings; return its id."""
    sid = schedule_id(monitor.task_queue)
    schedule = _schedule(every, monitor)
    return await upsert_schedule(client, sid, schedule)
