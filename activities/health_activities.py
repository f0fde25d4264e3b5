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
import json
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
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from activities.agent_instances import AgentInstances
from activities.database.health_snapshots import HealthSnapshots
from agents.base_agent import BaseAgent
from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts import search_attributes as sa
from aiops.contracts.activities import (
    CheckAgentsCall,
    CheckResult,
    FleetGroup,
    FleetTriage,
    HealthAlert,
    HealthSnapshot,
    ListAgentsCall,
    LookAt,
    Observations,
    ObserveAgentsCall,
    PendingApprovals,
    TriageCall,
)
from aiops.contracts.agent import AgentStatus, hooks_task_queue
from aiops.contracts.errors import UnknownAgentTypeError
from aiops.contracts.health import AgentHealth, AgentObservation, HealthStatus, WorkerResources, classify
from aiops.contracts.health_summary import (
    NEEDS_A_LOOK,
    SUMMARY_OK,
    closer_look,
    last_poll,
    queue_silence,
    summary_covers,
)
from aiops.contracts.models import EventType, Severity, SystemEvent

log = logging.getLogger("aiops.health")

CONCURRENT_OBSERVATIONS = 20
LIST_PAGE = 1000  # the server's largest visibility page by default
REPORTED_PROBLEMS = "TemporalReportedProblems"  # set by the server on repeatedly failing workflow tasks


def _keywords(payload: Payload | None) -> list[str]:
    """A Keyword or KeywordList search attribute's values, from its JSON payload."""
    if payload is None or not payload.data:
        return []
    value = json.loads(payload.data)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _keyword(payload: Payload | None) -> str | None:
    values = _keywords(payload)
    return values[0] if values else None


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
                self._count_status_query("check")
                try:
                    status = await handle.query(
                        agent_contract.AgentMessages.status,
                        rpc_timeout=timedelta(seconds=call.timeout_seconds),
                    )
                except RPCError as err:
                    return agent_id, CheckResult(error=f"status unavailable: {err.message}"[:300])
                return agent_id, await self._check(status, call.timeout_seconds)

        return dict(await asyncio.gather(*(check(a) for a in call.agent_ids)))

    @activity.defn
    async def has_health_checks(self, agent_type: str) -> bool:
        """Whether the agent type fills ``_health_check_specific`` (run on that type's queue): the
        monitor runs the checks of such types every pass, and skips the others' agents."""
        cls = self.instances.factory.agent_class(agent_type)
        return cls._health_check_specific is not BaseAgent._health_check_specific

    def _hooked(self, agent_type: str) -> bool | None:
        """``has_health_checks`` for a type this worker has (None: it has not)."""
        try:
            cls = self.instances.factory.agent_class(agent_type)
        except UnknownAgentTypeError:
            return None
        return cls._health_check_specific is not BaseAgent._health_check_specific

    @activity.defn
    async def triage_fleet(self, call: TriageCall) -> FleetTriage:
        """The fleet on the task queue from visibility, sorted without listing every agent.

        Listed: the agents that need a closer look (one query), the ``ok`` agents of types with a
        real health check or that this worker lacks, and the ``ok`` agents that were not healthy
        at their last verdict (recoveries). Counted, per type: the ``ok`` agents of plain types on
        served queues, healthy without a query. When a queue is silent or this worker is short of
        memory or disk, that type's ``ok`` agents are listed and judged in a group instead.
        With thresholds the summary does not cover (or ``observe_all``) every agent is a look."""
        now = datetime.now(UTC)
        since = now - timedelta(seconds=call.failed_within_seconds)
        base = agent_contract.agents_query(call.task_queue, failed_since=since)
        running = agent_contract.agents_query(call.task_queue)
        if call.skip_agent_id:
            skip = f" AND WorkflowId != {sa.quoted(agent_contract.agent_workflow_id(call.skip_agent_id))}"
            base, running = base + skip, running + skip
        covered = summary_covers(call.thresholds) and not call.observe_all
        worker = worker_resources()
        look: list[LookAt] = []
        judged: dict[tuple[str, str], list[str]] = {}  # (type, state) -> ids
        listed = 0

        async def list_rows(query: str) -> None:
            nonlocal listed
            request = ListWorkflowExecutionsRequest(
                namespace=self.client.namespace, query=query, page_size=LIST_PAGE
            )
            while True:
                page = await self.client.workflow_service.list_workflow_executions(request)
                for info in page.executions:
                    agent_id = agent_contract.agent_id_of(info.execution.workflow_id)
                    if agent_id is None or agent_id == call.skip_agent_id:
                        continue
                    listed += 1
                    fields = info.search_attributes.indexed_fields
                    agent_type = _keyword(fields.get(sa.AGENT_TYPE.name)) or ""
                    state = _keyword(fields.get(sa.AGENT_STATE.name))
                    reason = closer_look(
                        state,
                        _keyword(fields.get(sa.HEALTH.name)),
                        WorkflowExecutionStatus(info.status).name.title(),
                        _keywords(fields.get(REPORTED_PROBLEMS)),
                        covered,
                    )
                    if reason is not None or not agent_type:
                        look.append(
                            LookAt(agent_id=agent_id, agent_type=agent_type, reason=reason or "no type")
                        )
                    else:
                        judged.setdefault((agent_type, state or ""), []).append(agent_id)
                if not page.next_page_token:
                    return
                request.next_page_token = page.next_page_token

        silence = call.worker_silence_seconds
        workflows_gone = await self._queue_silence(
            call.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, now, silence
        )

        async def verdict_of(agent_type: str) -> AgentHealth:
            """What an ``ok`` agent of this type is, from its queues and this worker alone."""
            observation = AgentObservation(agent_id="", agent_type=agent_type, state="running")
            if workflows_gone is not None:
                observation.reachable = False
                observation.problem = f"no worker serves task queue {call.task_queue}: {workflows_gone}"
            else:
                hooks = hooks_task_queue(call.task_queue, agent_type)
                gone = await self._queue_silence(hooks, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, now, silence)
                if gone is not None:
                    observation.check_error = f"no worker serves agent type {agent_type} ({hooks}: {gone})"
            verdict = classify(observation, worker, call.thresholds)
            assert verdict is not None
            return verdict

        counted: dict[str, int] = {}
        if not covered:
            await list_rows(base)
        else:
            await list_rows(base + " AND " + NEEDS_A_LOOK)
            ok = running + " AND " + SUMMARY_OK
            plain = sorted(t for t in self.instances.factory.types() if self._hooked(t) is False)
            others = f" AND {sa.AGENT_TYPE.name} NOT IN ({', '.join(map(sa.quoted, plain))})" if plain else ""
            await list_rows(ok + others)  # types with a real check, or that this worker lacks
            of_types = {t: f"{ok} AND {sa.AGENT_TYPE.name} = {sa.quoted(t)}" for t in plain}
            counts = await asyncio.gather(*(self.client.count_workflows(q) for q in of_types.values()))
            for (agent_type, of_type), found in zip(of_types.items(), counts, strict=True):
                n = found.count
                if n and (await verdict_of(agent_type)).status == HealthStatus.HEALTHY:
                    counted[agent_type] = n
                elif n:
                    await list_rows(of_type)  # judged in a group below, with the reason
            # Recoveries: agents not healthy at their last verdict whose summary now says ok.
            recovering = sorted(set(await self._last_not_healthy()) - {a.agent_id for a in look})
            for start in range(0, len(recovering), 100):
                chunk = recovering[start : start + 100]
                workflow_ids = ", ".join(sa.quoted(agent_contract.agent_workflow_id(a)) for a in chunk)
                await list_rows(f"{ok} AND WorkflowId IN ({workflow_ids})")
        groups: dict[tuple[HealthStatus, tuple[str, ...]], FleetGroup] = {}
        verdicts = {t: await verdict_of(t) for t in sorted({t for t, _ in judged})}
        for (agent_type, _state), ids in sorted(judged.items()):
            verdict = verdicts[agent_type]
            key = (verdict.status, tuple(verdict.reasons))
            group = groups.setdefault(key, FleetGroup(status=verdict.status, reasons=verdict.reasons))
            group.agents_by_type.setdefault(agent_type, []).extend(ids)
        for group in groups.values():
            for type_ids in group.agents_by_type.values():
                type_ids[:] = sorted(set(type_ids))
        look.sort(key=lambda a: a.agent_id)
        types = sorted(verdicts)
        known = {t: self._hooked(t) for t in types}
        return FleetTriage(
            groups=list(groups.values()),
            look=look,
            worker=worker,
            listed=listed,
            hooked_types=[t for t in types if known[t] is True],
            plain_types=[t for t in types if known[t] is False],
            counted=counted,
        )

    async def _last_not_healthy(self) -> dict[str, HealthStatus]:
        return await self.snapshots.last_not_healthy() if self.snapshots is not None else {}

    async def _queue_silence(
        self, name: str, kind: TaskQueueType.ValueType, now: datetime, limit: float
    ) -> str | None:
        """Why no worker serves the task queue (None: one polled it recently); one call per queue."""
        described = await self.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.client.namespace, task_queue=TaskQueue(name=name), task_queue_type=kind
            )
        )
        polls = [p.last_access_time.ToDatetime(tzinfo=UTC) for p in described.pollers]
        return queue_silence(last_poll(polls), now, limit)

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
            await handle.signal(agent_contract.AgentMessages.submit_event, event.model_dump(mode="json"))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.error("the alerting agent %s is not running; the alert was only logged", alert.alert_agent_id)
            return False
        return True

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.list_agents,
            self.triage_fleet,
            self.observe_agents,
            self.summarize_approvals,
            self.record_health,
            self.raise_health_alert,
        ]

    def hooks(self) -> list[Callable[..., Any]]:
        """What runs agent code: served on each agent type's queue."""
        return [self.check_agents, self.has_health_checks]
