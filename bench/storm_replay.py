"""After a storm: replay every run of its workflows against today's code, and say how the agent decided.

A storm is where a workflow task the server refused (force-closed, ``UnhandledCommand``) can make
what a batch saw differ between the first attempt and the replay; the storm's figures mean
nothing if its histories do not replay. ``check(client, workflow_ids)`` fetches every run of
each workflow id (the chain continue-as-new made), replays them all with
``temporalio.worker.Replayer`` against the current workflow classes, and reads from the agent's
histories how each batch was decided: ``local`` (a local activity's marker), ``storm`` (a
regular activity on the workflow's own task queue, dispatched eagerly to the worker that ran
the task) or ``hooks`` (a regular activity on the agent type's hooks queue), the scheduled to
started latency of the regular ones, and the workflow tasks that failed (by cause).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from workflows.agent.overflow import AgentOverflowWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.sandbox import workflow_runner


@dataclass
class StormReplay:
    runs: int = 0
    events: int = 0
    failures: list[str] = field(default_factory=list)  # "<workflow id> <run id>: <error>"
    decided_by: Counter[str] = field(default_factory=Counter)  # local / storm / hooks: batches
    task_failures: Counter[str] = field(default_factory=Counter)  # cause -> count
    started_latency_ms: list[float] = field(default_factory=list)  # own-queue activities

    def summary(self) -> str:
        lat = sorted(self.started_latency_ms)

        def p(q: float) -> str:
            return f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.1f}" if lat else "-"

        verdict = "all replayed" if not self.failures else f"{len(self.failures)} FAILED"
        return (
            f"replay: {self.runs} runs ({self.events} history events) {verdict}; batches decided "
            f"{dict(self.decided_by)}; own-queue decisions scheduled->started p50 {p(0.5)} ms, "
            f"p99 {p(0.99)} ms, max {p(1.0)} ms; failed workflow tasks {dict(self.task_failures) or 0}"
        )


async def check(client: Client, workflow_ids: list[str], dump: Path | None = None) -> StormReplay:
    """Replay every run of ``workflow_ids``; with ``dump``, save each history there as JSON (the
    form ``temporal workflow show --output json`` and ``WorkflowHistory.from_json`` read)."""
    out = StormReplay()
    histories: list[WorkflowHistory] = []
    runs: list[str] = []
    for workflow_id in workflow_ids:
        async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
            handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
            history = await handle.fetch_history()
            histories.append(history)
            if dump is not None:
                await asyncio.to_thread(save, dump / f"{workflow_id}-{execution.run_id}.json", history)
            runs.append(f"{workflow_id} run {execution.run_id}")
            out.runs += 1
            out.events += len(history.events)
            read_decisions(history, out)
    replayer = Replayer(
        workflows=[AgentWorkflow, AgentOverflowWorkflow],
        data_converter=client.data_converter,
        workflow_runner=workflow_runner(),
        # A storm's catch-up task applies thousands of signals in one activation: on a loaded
        # machine longer than the deadlock detector's 2 s, which says nothing of determinism.
        debug_mode=True,
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    async with replayer.workflow_replay_iterator(each()) as results:
        index = 0
        async for result in results:
            if result.replay_failure is not None:
                out.failures.append(f"{runs[index]}: {result.replay_failure}")
            index += 1
    return out


def save(path: Path, history: WorkflowHistory) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())


def read_decisions(history: WorkflowHistory, out: StormReplay) -> None:
    events = history.events
    by_id = {e.event_id: e for e in events}
    queue = events[0].workflow_execution_started_event_attributes.task_queue.name
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            payloads = e.marker_recorded_event_attributes.details.get("data")
            if payloads and payloads.payloads:
                try:
                    data = json.loads(payloads.payloads[0].data)
                except ValueError:
                    continue
                if data.get("activity_type") == "decide_events":
                    out.decided_by["local"] += 1
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == "decide_events":
                own = a.task_queue.name == queue
                out.decided_by["storm" if own else "hooks"] += 1
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            scheduled = by_id.get(e.activity_task_started_event_attributes.scheduled_event_id)
            if scheduled is not None:
                s = scheduled.activity_task_scheduled_event_attributes
                if s.activity_type.name == "decide_events" and s.task_queue.name == queue:
                    delta = e.event_time.ToDatetime() - scheduled.event_time.ToDatetime()
                    out.started_latency_ms.append(delta.total_seconds() * 1000)
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            cause = e.workflow_task_failed_event_attributes.cause
            out.task_failures[WorkflowTaskFailedCause.Name(cause)] += 1
