"""The one object an agent's components share: the run's state, its per-run counts, and the
services every component uses (audit, metrics, problems, the hooks queue).

``state`` is what continue-as-new carries; everything else here lives for one run. The
components (``commands``, ``intake``, ``decisions``, ``actions``, ``lifecycle``) each hold this
object instead of reaching back into the workflow, so each can be read on its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.contracts.agent import AgentRunState, RecentProblem, hooks_task_queue
    from workflows import metrics
    from workflows.agent.audit import AgentAudit
    from workflows.agent.event_intake import EventIntake
    from workflows.agent.state import record_problem

# Stay well under the server's 10,000 signals per run whatever the config says.
SIGNALS_PER_RUN_CEILING = 8000


class AgentContext:
    def __init__(self, state: AgentRunState, started_by: str) -> None:
        self.state = state
        self.started_by = started_by
        self.intake = EventIntake(state)
        self.signals_this_run = 0
        self.events_this_run = 0
        self.children_this_run = 0
        self.launched_this_run: set[str] = set()  # action ids started from the worker (action_launch.py)
        self.step_lock = asyncio.Lock()  # held by a batch step and by a config switch
        self.detector_stale = False  # the config changed: bring the detector schedule in line
        self.upgrade_requested = False  # a person asked for continue-as-new now (commands.py)
        self.audit = AgentAudit(state)
        self.audit.sink_available(state.audit_log)  # as the last run learned it
        self.confirming: dict[str, asyncio.Task[None]] = {}  # actions whose claimed end is being confirmed
        self.spill: list[dict[str, Any]] = []  # signalled events the full queue could not take (overflow.py)

    def hooks_queue(self) -> str:
        """The task queue of this agent type's hooks, which only workers that have the type poll."""
        return hooks_task_queue(workflow.info().task_queue, self.state.config.type)

    def run_is_full(self, suggested: bool = True) -> bool:
        """Time to continue as new: the server suggests it, or this run took its share."""
        return (
            (suggested and workflow.info().is_continue_as_new_suggested())
            or self.events_this_run >= self.state.config.runtime.max_events_per_run
            or self.signals_this_run >= SIGNALS_PER_RUN_CEILING
            or self.children_this_run >= self.state.config.runtime.max_actions_per_run
            or self.upgrade_requested
        )

    def audit_log_is(self, available: bool) -> None:
        """What the worker said of its audit log: without one, rows are not queued at all."""
        self.state.audit_log = available
        self.audit.sink_available(available)

    def record_lifecycle(
        self, what: str, actor: str = "", *, sequence: int | None = None, **detail: Any
    ) -> None:
        """``sequence``: the one a start's local activity was given for its row, so the outbox's
        row for the same step has the same key (default: events and signals taken so far)."""
        if sequence is None:
            sequence = self.lifecycle_sequence()
        self.audit.lifecycle(what, sequence, actor=actor, **detail)

    def lifecycle_sequence(self) -> int:
        return self.state.counters.events_received + self.signals_this_run

    def count(self, outcome: str, n: int = 1) -> None:
        metrics.count_events(self.state.config.type, self.state.config.id, outcome, n)

    def reject(self, reason: str) -> None:
        """A payload that is not a usable event: counted, audited (up to a cap) and kept in status."""
        self.state.counters.events_rejected += 1
        self.count("rejected")
        self.audit.rejection(reason, self.signals_this_run)
        record_problem(self.state.recent_rejections, RecentProblem(at=workflow.now(), message=reason))
        workflow.logger.warning("rejected event payload: %s", reason)

    def note_error(self, message: str, event_id: str | None = None) -> None:
        record_problem(
            self.state.recent_errors, RecentProblem(at=workflow.now(), message=message, event_id=event_id)
        )
        workflow.logger.warning("agent %s: %s", self.state.config.id, message)
