"""HealthMonitorWorkflow: one health check of every agent on a task queue.

A Temporal Schedule starts it every interval (``aiops/health_schedule.py``).
It lists the running agents through visibility, observes them in pages
(status query as heartbeat, health-check hook, worker resources), classifies
each with the pure rules of ``agents/health.py``, records the snapshot (and
the gauges), and alerts on every transition since the last snapshot.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CheckAgentsCall,
        HealthAlert,
        HealthSnapshot,
        ListAgentsCall,
        Observations,
        ObserveAgentsCall,
        PendingApprovals,
    )
    from activities.health_activities import HealthActivities
    from agents.health import (
        AgentHealth,
        AgentObservation,
        HealthStatus,
        HealthThresholds,
        classify,
        transitions,
    )
    from workflows.agent_contract import hooks_task_queue
    from workflows.failures import cause_message

PAGE = 100
RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1))


class MonitorInput(BaseModel):
    task_queue: str
    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    alert_agent_id: str | None = None
    failed_within_seconds: float = 3600.0  # agents whose workflow failed this recently are judged too


class MonitorReport(BaseModel):
    monitor_run: str
    agents: list[AgentHealth]
    alerts: int
    approvals: PendingApprovals


HOOKS_QUEUE_PATCH = "hooks-queue-v1"  # passes recorded before it ran health checks in observe_agents


@workflow.defn
class HealthMonitorWorkflow:
    async def _check(self, observed: list[AgentObservation], task_queue: str, limit: float) -> None:
        """Run the health checks of the running agents, one activity per agent type on its queue."""
        by_type: dict[str, list[AgentObservation]] = {}
        for o in observed:
            if o.reachable and o.agent_type and o.state in ("running", "paused"):
                by_type.setdefault(o.agent_type, []).append(o)
        for agent_type, group in sorted(by_type.items()):
            try:
                results = await workflow.execute_activity_method(
                    HealthActivities.check_agents,
                    CheckAgentsCall(agent_ids=[o.agent_id for o in group], timeout_seconds=limit),
                    task_queue=hooks_task_queue(task_queue, agent_type),
                    start_to_close_timeout=timedelta(seconds=30 + 3 * limit),
                    # No worker serving the type answers within this: that is a finding too.
                    schedule_to_close_timeout=timedelta(seconds=60 + 6 * limit),
                    retry_policy=RETRY,
                )
            except ActivityError as err:
                for o in group:
                    o.check_error = f"health check did not run: {cause_message(err)}"[:300]
                continue
            for o in group:
                result = results.get(o.agent_id)
                if result is not None:
                    o.checks, o.check_error = result.checks, result.error

    @workflow.run
    async def run(self, input: MonitorInput) -> MonitorReport:
        run_id = workflow.info().run_id
        ids: list[str] = await workflow.execute_activity_method(
            HealthActivities.list_agents,
            ListAgentsCall(task_queue=input.task_queue, failed_within_seconds=input.failed_within_seconds),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        if input.alert_agent_id in ids:
            ids.remove(input.alert_agent_id)  # the alerting agent's own trouble shows in its status
        timeout = input.thresholds.status_timeout_seconds
        healths: list[AgentHealth] = []
        observations = []
        # Health checks run agent code: on each agent type's own queue, where the type is.
        by_type = workflow.patched(HOOKS_QUEUE_PATCH)
        for start in range(0, len(ids), PAGE):
            seen: Observations = await workflow.execute_activity_method(
                HealthActivities.observe_agents,
                ObserveAgentsCall(
                    agent_ids=ids[start : start + PAGE],
                    status_timeout_seconds=timeout,
                    run_checks=not by_type,
                ),
                start_to_close_timeout=timedelta(seconds=60 + 3 * timeout),
                retry_policy=RETRY,
            )
            if by_type:
                await self._check(seen.agents, input.task_queue, timeout)
            observations.extend(seen.agents)
            verdicts = [classify(o, seen.worker, input.thresholds) for o in seen.agents]
            healths.extend(v for v in verdicts if v is not None)
        approvals: PendingApprovals = await workflow.execute_activity_method(
            HealthActivities.summarize_approvals,
            input.task_queue,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        snapshot = HealthSnapshot(
            monitor_run=run_id,
            taken_at=workflow.now(),
            agents=healths,
            observations=observations,
            approvals=approvals,
        )
        previous: dict[str, HealthStatus] = await workflow.execute_activity_method(
            HealthActivities.record_health,
            snapshot,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        changes = transitions(previous, healths)
        for change in changes:
            await workflow.execute_activity_method(
                HealthActivities.raise_health_alert,
                HealthAlert(transition=change, alert_agent_id=input.alert_agent_id, monitor_run=run_id),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        counts = {s.value: sum(h.status == s for h in healths) for s in HealthStatus}
        workflow.logger.info("health of %d agent(s): %s; %d alert(s)", len(healths), counts, len(changes))
        return MonitorReport(monitor_run=run_id, agents=healths, alerts=len(changes), approvals=approvals)
