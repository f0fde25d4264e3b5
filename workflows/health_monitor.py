"""HealthMonitorWorkflow: one health check of every agent on a task queue.

A Temporal Schedule starts it every interval (``aiops/health_schedule.py``).
It reads the fleet from visibility in one local activity (``triage_fleet``):
healthy agents whose published health summary (``aiops/contracts/health_summary.py``)
and task queues say enough are counted per type, not even listed; agents judged
from visibility otherwise (a silent queue, a recovery) come in groups, without
a query; the others (a flag in
the summary, no summary, not running, the server reporting failing workflow
tasks) and the agents of types whose health-check hook does real checks are
observed in pages (status query as heartbeat, health-check hook, worker
resources). Each is classified with the pure rules of ``aiops/contracts/health.py``; the
snapshot is recorded (and the gauges), and every transition since the last
snapshot is alerted.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.health_activities import HealthActivities
    from aiops.contracts.activities import (
        CheckAgentsCall,
        FleetGroup,
        FleetTriage,
        HealthAlert,
        HealthSnapshot,
        Observations,
        ObserveAgentsCall,
        PendingApprovals,
        TriageCall,
        UnreportedEnds,
        UnreportedEndsCall,
    )
    from aiops.contracts.agent import hooks_task_queue
    from aiops.contracts.errors import describe_validation_error
    from aiops.contracts.fields import same_named
    from aiops.contracts.health import (
        AgentHealth,
        AgentObservation,
        HealthStatus,
        HealthThresholds,
        classify,
        transitions,
    )
    from workflows.agent.raw import UndecodablePayload, decoded
    from workflows.failures import cause_message

PAGE = 100
RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1))
# Marks the passes that tell agents of the actions that closed without reporting their end
# (activities/action_ends.py): a pass recorded before replays without that local activity. A pass
# lasts seconds to minutes, so no run of the old code outlives a deploy by more than one
# ``--health-every``: deprecate (workflow.deprecate_patch) in the release after the one that adds
# it, remove with the next history generation (g2_), docs/deploy.md "A patch's lifecycle".
UNREPORTED_ENDS_PATCH = "report-unreported-action-ends"


class MonitorInput(BaseModel):
    task_queue: str
    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    alert_agent_id: str | None = None
    failed_within_seconds: float = 3600.0  # agents whose workflow failed this recently are judged too
    # A task queue nobody polled for this long has no worker (an idle worker polls every minute).
    worker_silence_seconds: float = Field(default=120.0, gt=0)
    # Look at every agent closely (status query, health check), as every pass did before the summary.
    observe_all: bool = False
    # Actions that closed this recently without reporting their end (terminated by hand, timed out)
    # are reported to their agents; each pass looks this far back, so a pass that did not run
    # (no worker) is made up by the next. An agent told twice counts the end once.
    unreported_within_seconds: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)


# The run fails with this type when its input is no MonitorInput (a pass started by hand).
INVALID_MONITOR_INPUT = "InvalidMonitorInput"

if TYPE_CHECKING:
    MonitorStart = MonitorInput  # callers start a pass with a MonitorInput (or its JSON)
else:
    MonitorStart = RawValue  # what the SDK sees: the payload undecoded, read by monitor_input


def monitor_input(payload: Any) -> MonitorInput:
    """The pass's input, decoded here and not by the SDK: a pass started by hand with a bad input
    (``temporal workflow start --input``, as docs/operations.md shows) then fails at once with the
    problem named, instead of failing its workflow task for ever."""
    try:
        data = decoded(payload) if isinstance(payload, RawValue) else payload
        return MonitorInput.model_validate(data)
    except (UndecodablePayload, ValidationError) as err:
        why = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise ApplicationError(
            f"invalid health monitor input: {why}", type=INVALID_MONITOR_INPUT, non_retryable=True
        ) from None


class MonitorReport(BaseModel):
    monitor_run: str
    agents: list[AgentHealth]  # the agents observed closely (every agent before health-fleet-v1)
    alerts: int
    approvals: PendingApprovals
    groups: list[FleetGroup] = Field(default_factory=list)  # judged from visibility alone
    observed: int = 0  # agents queried for their status this pass
    unreported_ends: UnreportedEnds = Field(default_factory=UnreportedEnds)  # actions' ends told
    counted: dict[str, int] = Field(default_factory=dict)  # healthy by summary, counted per type

    def verdicts(self) -> list[AgentHealth]:
        """Every agent's verdict, observed or judged in a group."""
        return [*self.agents, *(h for g in self.groups for h in g.verdicts())]


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

    async def _triage(self, input: MonitorInput) -> tuple[list[str], list[FleetGroup], dict[str, int]]:
        """The agents to observe, the groups judged from visibility alone, the healthy ones counted."""
        # Local activities (on this worker, no task queue round trip): a pass is a few of them.
        triage: FleetTriage = await workflow.execute_local_activity_method(
            HealthActivities.triage_fleet,
            TriageCall(
                skip_agent_id=input.alert_agent_id,
                **same_named(
                    input,
                    "task_queue",
                    "failed_within_seconds",
                    "thresholds",
                    "worker_silence_seconds",
                    "observe_all",
                ),
            ),
            start_to_close_timeout=timedelta(seconds=120),
            retry_policy=RETRY,
        )
        look = [a.agent_id for a in triage.look]
        groups = triage.groups
        # Types whose hook does real checks: their agents are observed and checked every pass. This
        # worker answered for the types it has; the others are asked where they are (one small
        # activity per type). Agents on a silent queue are judged already.
        judged = {t for g in groups if g.status != HealthStatus.UNHEALTHY for t in g.agents_by_type}
        types = sorted(judged - set(triage.hooked_types) - set(triage.plain_types))
        limit = input.thresholds.status_timeout_seconds
        answers = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    HealthActivities.has_health_checks,
                    agent_type,
                    task_queue=hooks_task_queue(input.task_queue, agent_type),
                    start_to_close_timeout=timedelta(seconds=limit),
                    schedule_to_close_timeout=timedelta(seconds=30 + 3 * limit),
                    retry_policy=RETRY,
                )
                for agent_type in types
            ),
            return_exceptions=True,
        )
        hooked = {t for t, answer in zip(types, answers, strict=True) if answer is not False}
        hooked |= set(triage.hooked_types)
        for group in groups:
            if group.status == HealthStatus.UNHEALTHY:
                continue
            for agent_type in sorted(hooked & set(group.agents_by_type)):
                look.extend(group.agents_by_type.pop(agent_type))
        groups = [g for g in groups if g.agents_by_type]
        return sorted(look), groups, triage.counted

    async def _report_unreported_ends(self, input: MonitorInput) -> UnreportedEnds:
        """Tell agents of their actions that ended without a word (see UNREPORTED_ENDS_PATCH)."""
        if not workflow.patched(UNREPORTED_ENDS_PATCH):
            return UnreportedEnds()
        since = workflow.now() - timedelta(seconds=input.unreported_within_seconds)
        try:
            told: UnreportedEnds = await workflow.execute_local_activity_method(
                HealthActivities.report_unreported_ends,
                UnreportedEndsCall(task_queue=input.task_queue, closed_since=since),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
            )
        except ActivityError as err:  # the next pass looks again: the health verdicts go on
            workflow.logger.warning("could not report actions' unreported ends: %s", cause_message(err))
            return UnreportedEnds()
        if told.told:
            workflow.logger.info(
                "told agents of %d action(s) that closed without reporting their end: %s",
                told.told,
                ", ".join(told.action_ids),
            )
        return told

    @workflow.run
    async def run(self, payload: MonitorStart) -> MonitorReport:
        input = monitor_input(payload)
        run_id = workflow.info().run_id
        (ids, groups, counted), approvals, unreported = await asyncio.gather(
            self._triage(input),
            workflow.execute_local_activity_method(
                HealthActivities.summarize_approvals,
                input.task_queue,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
            ),
            self._report_unreported_ends(input),
        )
        timeout = input.thresholds.status_timeout_seconds
        healths: list[AgentHealth] = []
        observations = []
        for start in range(0, len(ids), PAGE):
            seen: Observations = await workflow.execute_activity_method(
                HealthActivities.observe_agents,
                ObserveAgentsCall(
                    agent_ids=ids[start : start + PAGE],
                    status_timeout_seconds=timeout,
                    run_checks=False,  # health checks run agent code: on each type's own queue
                ),
                start_to_close_timeout=timedelta(seconds=60 + 3 * timeout),
                retry_policy=RETRY,
            )
            await self._check(seen.agents, input.task_queue, timeout)
            observations.extend(seen.agents)
            verdicts = [classify(o, seen.worker, input.thresholds) for o in seen.agents]
            healths.extend(v for v in verdicts if v is not None)
        snapshot = HealthSnapshot(
            monitor_run=run_id,
            taken_at=workflow.now(),
            agents=healths,
            observations=observations,
            approvals=approvals,
            groups=groups,
        )
        previous: dict[str, HealthStatus] = await workflow.execute_local_activity_method(
            HealthActivities.record_health,
            snapshot,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        # Agents judged in a group matter to transitions only if they were something else before (or
        # the group is not healthy): the others stay out of memory, as they stayed out of history.
        grouped = [
            AgentHealth(agent_id=a, agent_type=t, status=g.status, reasons=g.reasons)
            for g in groups
            for t, ids in sorted(g.agents_by_type.items())
            for a in ids
            if g.status != HealthStatus.HEALTHY or a in previous
        ]
        changes = transitions(previous, [*healths, *grouped])
        for change in changes:
            await workflow.execute_activity_method(
                HealthActivities.raise_health_alert,
                HealthAlert(transition=change, alert_agent_id=input.alert_agent_id, monitor_run=run_id),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        counts = {s.value: sum(h.status == s for h in healths) for s in HealthStatus}
        for g in groups:
            counts[g.status.value] += sum(len(ids) for ids in g.agents_by_type.values())
        counts[HealthStatus.HEALTHY.value] += sum(counted.values())
        workflow.logger.info(
            "health of %d agent(s) (%d observed): %s; %d alert(s)",
            sum(counts.values()),
            len(observations),
            counts,
            len(changes),
        )
        return MonitorReport(
            monitor_run=run_id,
            agents=healths,
            alerts=len(changes),
            approvals=approvals,
            groups=groups,
            observed=len(observations),
            counted=counted,
            unreported_ends=unreported,
        )
