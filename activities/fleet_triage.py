"""The health monitor's triage of the fleet: which agents need a closer look, without listing every
agent (``HealthActivities.triage_fleet``).

The fleet is read from visibility, page by page; agents whose published health summary says ``ok``
are counted per type instead of queried, unless their type has a real health check, this worker
lacks the type, a queue is silent, or this worker itself is short of memory or disk.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.agent_instances import AgentInstances
from activities.database.health_snapshots import HealthSnapshots
from activities.worker_resources import worker_resources
from agents.base_agent import BaseAgent
from aiops.contracts import agent as agent_contract
from aiops.contracts import search_attributes as sa
from aiops.contracts.activities import FleetGroup, FleetTriage, LookAt, TriageCall
from aiops.contracts.agent import hooks_task_queue
from aiops.contracts.errors import UnknownAgentTypeError
from aiops.contracts.health import AgentHealth, AgentObservation, HealthStatus, classify
from aiops.contracts.health_summary import (
    NEEDS_A_LOOK,
    SUMMARY_OK,
    closer_look,
    last_poll,
    queue_silence,
    summary_covers,
)

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


def hooked(instances: AgentInstances, agent_type: str) -> bool | None:
    """Whether the agent type fills ``_health_check_specific`` (None: this worker lacks the type)."""
    try:
        cls = instances.factory.agent_class(agent_type)
    except UnknownAgentTypeError:
        return None
    return cls._health_check_specific is not BaseAgent._health_check_specific


async def queue_silence_of(
    client: Client, name: str, kind: TaskQueueType.ValueType, now: datetime, limit: float
) -> str | None:
    """Why no worker serves the task queue (None: one polled it recently); one call per queue."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=name), task_queue_type=kind
        )
    )
    polls = [p.last_access_time.ToDatetime(tzinfo=UTC) for p in described.pollers]
    return queue_silence(last_poll(polls), now, limit)


class FleetTriager:
    """One triage pass over the agents of one task queue."""

    def __init__(
        self, client: Client, instances: AgentInstances, snapshots: HealthSnapshots | None, call: TriageCall
    ) -> None:
        self.client = client
        self.instances = instances
        self.snapshots = snapshots
        self.call = call

    async def _last_not_healthy(self) -> dict[str, HealthStatus]:
        return await self.snapshots.last_not_healthy() if self.snapshots is not None else {}

    async def run(self) -> FleetTriage:
        call = self.call
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
        workflows_gone = await queue_silence_of(
            self.client, call.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, now, silence
        )

        async def verdict_of(agent_type: str) -> AgentHealth:
            """What an ``ok`` agent of this type is, from its queues and this worker alone."""
            observation = AgentObservation(agent_id="", agent_type=agent_type, state="running")
            if workflows_gone is not None:
                observation.reachable = False
                observation.problem = f"no worker serves task queue {call.task_queue}: {workflows_gone}"
            else:
                hooks = hooks_task_queue(call.task_queue, agent_type)
                gone = await queue_silence_of(
                    self.client, hooks, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, now, silence
                )
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
            plain = sorted(t for t in self.instances.factory.types() if hooked(self.instances, t) is False)
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
        known = {t: hooked(self.instances, t) for t in types}
        return FleetTriage(
            groups=list(groups.values()),
            look=look,
            worker=worker,
            listed=listed,
            hooked_types=[t for t in types if known[t] is True],
            plain_types=[t for t in types if known[t] is False],
            counted=counted,
        )
