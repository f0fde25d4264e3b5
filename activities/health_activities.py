"""Activities of the health monitor: observe agents, record verdicts, raise alerts.

Observing an agent means asking its workflow for ``status`` (an answer within
the timeout is its heartbeat) and running its ``health_check`` hook on this
worker. Verdicts go to ``health_snapshots`` and to the ``aiops_agent_health``
gauge; a transition becomes a log line, a counter and an ``agent_health``
event for the alerting agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import (
    CheckAgentsCall,
    CheckResult,
    HealthAlert,
    HealthSnapshot,
    ListAgentsCall,
    Observations,
    ObserveAgentsCall,
    PendingApprovals,
)
from activities.database.health_snapshots import HealthSnapshots
from agents.health import AgentObservation, HealthStatus, WorkerResources
from agents.models import EventType, Severity, SystemEvent
from aiops.runtime.agent_instances import AgentInstances
from workflows import action_contract, agent_contract
from workflows import search_attributes as sa
from workflows.agent_contract import AgentStatus

log = logging.getLogger("aiops.health")

CONCURRENT_OBSERVATIONS = 20


def worker_resources(path: str = ".") -> WorkerResources:
    memory_kb = 0.0
    try:
        with open("/proc/self/status") as status:
            memory_kb = next(float(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        memory_kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    disk = shutil.disk_usage(path)
    return WorkerResources(
        worker=f"{socket.gethostname()}:{os.getpid()}",
        memory_mb=memory_kb / 1024,
        disk_free_ratio=disk.free / disk.total if disk.total else 1.0,
    )


class HealthActivities:
    def __init__(
        self,
        client: Client,
        instances: AgentInstances,
        pool: asyncpg.Pool | None = None,
        meter: MetricMeter | None = None,
    ) -> None:
        self.client = client
        self.instances = instances
        self.snapshots = HealthSnapshots(pool) if pool is not None else None
        runtime = client.service_client.config.runtime or Runtime.default()
        self.meter = meter or runtime.metric_meter

    @activity.defn
    async def list_agents(self, call: ListAgentsCall) -> list[str]:
        """Agents on the task queue from the visibility store: the running ones, and those whose
        workflow failed recently (so a failure is judged and alerted, not just gone)."""
        since = datetime.now(UTC) - timedelta(seconds=call.failed_within_seconds)
        query = agent_contract.agents_query(call.task_queue, failed_since=since)
        found = {agent_contract.agent_id_of(w.id) async for w in self.client.list_workflows(query)}
        return sorted(a for a in found if a is not None)

    @activity.defn
    async def observe_agents(self, call: ObserveAgentsCall) -> Observations:
        gate = asyncio.Semaphore(CONCURRENT_OBSERVATIONS)

        async def observe(agent_id: str) -> AgentObservation:
            async with gate:
                return await self._observe(agent_id, call.status_timeout_seconds, call.run_checks)

        agents = await asyncio.gather(*(observe(a) for a in call.agent_ids))
        return Observations(agents=list(agents), worker=worker_resources())

    async def _observe(self, agent_id: str, limit: float, run_checks: bool = True) -> AgentObservation:
        handle = self.client.get_workflow_handle(agent_contract.agent_workflow_id(agent_id))
        try:
            status: AgentStatus = await handle.query(
                agent_contract.STATUS, result_type=AgentStatus, rpc_timeout=timedelta(seconds=limit)
            )
        except RPCError as err:
            problem = "not running" if err.status == RPCStatusCode.NOT_FOUND else err.message
            return AgentObservation(agent_id=agent_id, reachable=False, problem=problem[:200])
        c = status.counters
        last = status.last_event_at or status.started_at
        observation = AgentObservation(
            agent_id=agent_id,
            agent_type=status.type,
            state=status.state.value,
            error_rate=status.error_rate,
            decisions=c.events_processed,
            success_rate=status.success_rate,
            finished_actions=c.actions_succeeded + c.actions_failed,
            queue_length=status.queue_length,
            circuit_open=status.circuit_open,
            recent_action_seconds=status.recent_action_seconds,
            heartbeat_age_seconds=(datetime.now(UTC) - last).total_seconds() if last else None,
        )
        if run_checks and status.state.value in ("running", "paused"):
            result = await self._check(status, limit)
            observation.checks, observation.check_error = result.checks, result.error
        return observation

    async def _check(self, status: AgentStatus, limit: float) -> CheckResult:
        try:
            agent = await asyncio.wait_for(self.instances.get(status.config), limit)
            report = await asyncio.wait_for(agent.health_check(), limit)
            return CheckResult(checks=report.checks)
        except Exception as err:  # the check itself failing is a finding, not an activity failure
            return CheckResult(error=f"{type(err).__name__}: {err}"[:300])

    @activity.defn
    async def check_agents(self, call: CheckAgentsCall) -> dict[str, CheckResult]:
        """Run the health-check hooks of agents of one type (on that type's queue)."""
        gate = asyncio.Semaphore(CONCURRENT_OBSERVATIONS)

        async def check(agent_id: str) -> tuple[str, CheckResult]:
            async with gate:
                handle = self.client.get_workflow_handle(agent_contract.agent_workflow_id(agent_id))
                try:
                    status: AgentStatus = await handle.query(
                        agent_contract.STATUS,
                        result_type=AgentStatus,
                        rpc_timeout=timedelta(seconds=call.timeout_seconds),
                    )
                except RPCError as err:
                    return agent_id, CheckResult(error=f"status unavailable: {err.message}"[:300])
                return agent_id, await self._check(status, call.timeout_seconds)

        return dict(await asyncio.gather(*(check(a) for a in call.agent_ids)))

    @activity.defn
    async def summarize_approvals(self, task_queue: str) -> PendingApprovals:
        query = action_contract.pending_approvals_query(task_queue)
        now = datetime.now(UTC)
        summary = PendingApprovals()
        async for w in self.client.list_workflows(query):
            agent_type = w.typed_search_attributes.get(sa.AGENT_TYPE) or "unknown"
            summary.count_by_type[agent_type] = summary.count_by_type.get(agent_type, 0) + 1
            waited = (now - w.start_time).total_seconds()
            oldest = summary.oldest_seconds_by_type.get(agent_type, 0.0)
            summary.oldest_seconds_by_type[agent_type] = max(oldest, waited)
        return summary

    @activity.defn
    async def record_health(self, snapshot: HealthSnapshot) -> dict[str, HealthStatus]:
        """Store the verdicts and export them; return each agent's previous recorded status."""
        health_gauge = self.meter.create_gauge("aiops_agent_health", "0 healthy, 1 degraded, 2 unhealthy")
        for h in snapshot.agents:
            health_gauge.set(h.status.level, {"agent_id": h.agent_id, "agent_type": h.agent_type})
        pending = self.meter.create_gauge("aiops_pending_approvals", "actions waiting for approval")
        oldest = self.meter.create_gauge_float(
            "aiops_oldest_pending_approval_seconds", "age of the oldest action waiting for approval", "s"
        )
        types = {h.agent_type for h in snapshot.agents} | set(snapshot.approvals.count_by_type)
        approvals = snapshot.approvals
        for agent_type in types:
            labels = {"agent_type": agent_type}
            pending.set(approvals.count_by_type.get(agent_type, 0), labels)
            oldest.set(approvals.oldest_seconds_by_type.get(agent_type, 0.0), labels)
        if self.snapshots is None:
            return {}
        return await self.snapshots.record(
            snapshot.monitor_run, snapshot.taken_at, snapshot.agents, snapshot.observations
        )

    @activity.defn
    async def raise_health_alert(self, alert: HealthAlert) -> bool:
        """Log, count and deliver one transition; True when an alerting agent received it."""
        t = alert.transition
        was = t.previous.value if t.previous else "unknown"
        log.warning(
            "HEALTH %s: agent %s went from %s to %s: %s",
            t.current.value.upper(),
            t.agent_id,
            was,
            t.current.value,
            "; ".join(t.reasons) or "all checks pass",
            extra={"agent_id": t.agent_id},
        )
        self.meter.create_counter("aiops_health_alerts_total", "health transitions alerted").add(
            1, {"agent_type": t.agent_type, "status": t.current.value}
        )
        if not alert.alert_agent_id:
            return False
        event = SystemEvent(
            id=f"health-{alert.monitor_run}-{t.agent_id}"[:128],
            type=EventType.AGENT_HEALTH,
            source=f"health-monitor/{t.agent_id}",
            severity={
                HealthStatus.UNHEALTHY: Severity.HIGH,
                HealthStatus.DEGRADED: Severity.MEDIUM,
                HealthStatus.HEALTHY: Severity.INFO,
            }[t.current],
            timestamp=datetime.now(UTC),
            data={
                "agent_id": t.agent_id,
                "agent_type": t.agent_type,
                "previous": was,
                "status": t.current.value,
                "reasons": t.reasons,
            },
            correlation_id=alert.monitor_run,
        )
        try:
            handle = self.client.get_workflow_handle(agent_contract.agent_workflow_id(alert.alert_agent_id))
            await handle.signal(agent_contract.SUBMIT_EVENT, event.model_dump(mode="json"))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.error("the alerting agent %s is not running; the alert was only logged", alert.alert_agent_id)
            return False
        return True

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.list_agents,
            self.observe_agents,
            self.summarize_approvals,
            self.record_health,
            self.raise_health_alert,
        ]

    def hooks(self) -> list[Callable[..., Any]]:
        """What runs agent code: served on each agent type's queue."""
        return [self.check_agents]
