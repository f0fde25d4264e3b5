"""Activities of the health monitor: triage the fleet, observe agents, record verdicts, raise alerts.

Triage reads the fleet from visibility in one paginated list (each agent's
state and published health summary, see ``aiops/contracts/health_summary.py``) and the
pollers of its task queues (one call per queue): agents whose summary is enough
are judged in groups, the rest are observed. Observing an agent means asking
its workflow for ``status`` (an answer within the timeout is its heartbeat) and
running its ``health_check`` hook on a worker of its type. Verdicts go to
``health_snapshots`` and to the ``aiops_agent_health`` gauge; a transition
becomes a log line, a counter and an ``agent_health`` event for the alerting
agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from activities.action_ends import report_unreported_ends
from activities.agent_instances import AgentInstances
from activities.database.health_snapshots import HealthSnapshots
from activities.fleet_triage import FleetTriager
from activities.worker_resources import worker_resources
from agents.base_agent import BaseAgent
from aiops.contracts import action as action_contract
from aiops.contracts import activities as calls
from aiops.contracts import agent as agent_contract
from aiops.contracts import search_attributes as sa
from aiops.contracts.agent import AgentStatus
from aiops.contracts.health import AgentObservation, HealthStatus
from aiops.contracts.models import EventType, Severity, SystemEvent

log = logging.getLogger("aiops.health")

CONCURRENT_OBSERVATIONS = 20


def observation_of(agent_id: str, status: AgentStatus, now: datetime) -> AgentObservation:
    """What the health monitor reads from an agent's status (pure; the health classification's
    property tests feed it the same way, so they test this mapping and not a copy of it)."""
    c = status.counters
    last = status.last_event_at or status.started_at
    return AgentObservation(
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
        heartbeat_age_seconds=(now - last).total_seconds() if last else None,
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
    async def observe_agents(self, call: calls.ObserveAgentsCall) -> calls.Observations:
        gate = asyncio.Semaphore(CONCURRENT_OBSERVATIONS)

        async def observe(agent_id: str) -> AgentObservation:
            async with gate:
                return await self._observe(agent_id, call.status_timeout_seconds, call.run_checks)

        agents = await asyncio.gather(*(observe(a) for a in call.agent_ids))
        return calls.Observations(agents=list(agents), worker=worker_resources())

    def _count_status_query(self, purpose: str) -> None:
        self.meter.create_counter(
            "aiops_health_status_queries_total", "status queries the health monitor sent to agents"
        ).add(1, {"purpose": purpose})

    async def _observe(self, agent_id: str, limit: float, run_checks: bool = True) -> AgentObservation:
        handle = self.client.get_workflow_handle(agent_contract.agent_workflow_id(agent_id))
        self._count_status_query("observe")
        try:
            status = await handle.query(
                agent_contract.AgentMessages.status, rpc_timeout=timedelta(seconds=limit)
            )
        except RPCError as err:
            problem = "not running" if err.status == RPCStatusCode.NOT_FOUND else err.message
            return AgentObservation(agent_id=agent_id, reachable=False, problem=problem[:200])
        observation = observation_of(agent_id, status, datetime.now(UTC))
        if run_checks and status.state.value in ("running", "paused"):
            result = await self._check(status, limit)
            observation.checks, observation.check_error = result.checks, result.error
        return observation

    async def _check(self, status: AgentStatus, limit: float) -> calls.CheckResult:
        try:
            agent = await asyncio.wait_for(self.instances.get(status.config), limit)
            report = await asyncio.wait_for(agent.health_check(), limit)
            return calls.CheckResult(checks=report.checks)
        except Exception as err:  # the check itself failing is a finding, not an activity failure
            return calls.CheckResult(error=f"{type(err).__name__}: {err}"[:300])

    @activity.defn
    async def check_agents(self, call: calls.CheckAgentsCall) -> dict[str, calls.CheckResult]:
        """Run the health-check hooks of agents of one type (on that type's queue)."""
        gate = asyncio.Semaphore(CONCURRENT_OBSERVATIONS)

        async def check(agent_id: str) -> tuple[str, calls.CheckResult]:
            async with gate:
                handle = self.client.get_workflow_handle(agent_contract.agent_workflow_id(agent_id))
                self._count_status_query("check")
                try:
                    status = await handle.query(
                        agent_contract.AgentMessages.status,
                        rpc_timeout=timedelta(seconds=call.timeout_seconds),
                    )
                except RPCError as err:
                    return agent_id, calls.CheckResult(error=f"status unavailable: {err.message}"[:300])
                return agent_id, await self._check(status, call.timeout_seconds)

        return dict(await asyncio.gather(*(check(a) for a in call.agent_ids)))

    @activity.defn
    async def has_health_checks(self, agent_type: str) -> bool:
        """Whether the agent type fills ``_health_check_specific`` (run on that type's queue): the
        monitor runs the checks of such types every pass, and skips the others' agents."""
        cls = self.instances.factory.agent_class(agent_type)
        return cls._health_check_specific is not BaseAgent._health_check_specific

    @activity.defn
    async def triage_fleet(self, call: calls.TriageCall) -> calls.FleetTriage:
        """The fleet on the task queue from visibility, sorted without listing every agent.

        Listed: the agents that need a closer look (one query), the ``ok`` agents of types with a
        real health check or that this worker lacks, and the ``ok`` agents that were not healthy
        at their last verdict (recoveries). Counted, per type: the ``ok`` agents of plain types on
        served queues, healthy without a query. When a queue is silent or this worker is short of
        memory or disk, that type's ``ok`` agents are listed and judged in a group instead.
        With thresholds the summary does not cover (or ``observe_all``) every agent is a look."""
        return await FleetTriager(self.client, self.instances, self.snapshots, call).run()

    @activity.defn
    async def summarize_approvals(self, task_queue: str) -> calls.PendingApprovals:
        query = action_contract.pending_approvals_query(task_queue)
        now = datetime.now(UTC)
        summary = calls.PendingApprovals()
        async for w in self.client.list_workflows(query):
            agent_type = w.typed_search_attributes.get(sa.AGENT_TYPE) or "unknown"
            summary.count_by_type[agent_type] = summary.count_by_type.get(agent_type, 0) + 1
            waited = (now - w.start_time).total_seconds()
            oldest = summary.oldest_seconds_by_type.get(agent_type, 0.0)
            summary.oldest_seconds_by_type[agent_type] = max(oldest, waited)
        return summary

    @activity.defn
    async def report_unreported_ends(self, call: calls.UnreportedEndsCall) -> calls.UnreportedEnds:
        """Tell the agents of actions that closed without reporting their end (terminated by hand,
        timed out) that they ended, so none stays pending for ever (activities/action_ends.py)."""
        return await report_unreported_ends(self.client, call)

    @activity.defn
    async def record_health(self, snapshot: calls.HealthSnapshot) -> dict[str, HealthStatus]:
        """Store the verdicts and export them; return the previous recorded status of each agent
        whose status may need an alert (every agent but those healthy now and before, or new)."""
        grouped = [h for g in snapshot.groups for h in g.verdicts()]
        health_gauge = self.meter.create_gauge("aiops_agent_health", "0 healthy, 1 degraded, 2 unhealthy")
        for h in [*snapshot.agents, *grouped]:
            health_gauge.set(h.status.level, {"agent_id": h.agent_id, "agent_type": h.agent_type})
        pending = self.meter.create_gauge("aiops_pending_approvals", "actions waiting for approval")
        oldest = self.meter.create_gauge_float(
            "aiops_oldest_pending_approval_seconds", "age of the oldest action waiting for approval", "s"
        )
        types = {h.agent_type for h in snapshot.agents} | set(snapshot.approvals.count_by_type)
        types |= {t for g in snapshot.groups for t in g.agents_by_type}
        approvals = snapshot.approvals
        for agent_type in types:
            labels = {"agent_type": agent_type}
            pending.set(approvals.count_by_type.get(agent_type, 0), labels)
            oldest.set(approvals.oldest_seconds_by_type.get(agent_type, 0.0), labels)
        if self.snapshots is None:
            return {}
        previous = await self.snapshots.record(
            snapshot.monitor_run, snapshot.taken_at, snapshot.agents, snapshot.observations, grouped
        )
        now = {h.agent_id: h.status for h in [*snapshot.agents, *grouped]}
        quiet = HealthStatus.HEALTHY
        return {a: s for a, s in previous.items() if not (s == quiet and now.get(a) == quiet)}

    @activity.defn
    async def raise_health_alert(self, alert: calls.HealthAlert) -> bool:
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
            await handle.signal(agent_contract.AgentMessages.submit_event, event.model_dump(mode="json"))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.error("the alerting agent %s is not running; the alert was only logged", alert.alert_agent_id)
            return False
        return True

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.triage_fleet,
            self.observe_agents,
            self.summarize_approvals,
            self.report_unreported_ends,
            self.record_health,
            self.raise_health_alert,
        ]

    def hooks(self) -> list[Callable[..., Any]]:
        """What runs agent code: served on each agent type's queue."""
        return [self.check_agents, self.has_health_checks]
