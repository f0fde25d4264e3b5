"""Starting an action's workflow from the agent's worker, eagerly (``aiops/contracts/action_start.py``).

The agent's workflow calls ``start_action`` as a local activity, so it runs in the process that
runs the agent's workflow task, with that worker's own client. The start asks for eager
execution: when this process also runs a worker on the agent type's queue (the default worker
does, ``aiops/runtime/worker_build.py``) and it has a free slot, the server returns the action's
first workflow task in its answer and that worker runs it at once, without the round trips a
child start pays. Elsewhere the start is an ordinary one, as correct and a little slower. An eager
start answers once that first task has been computed here, so that it reaches the server before
the agent's own task (``activities/first_activation.py``).

Runs at least once, like every activity: a repeated start meets "already started", and the
workflow it met is the agent's own start exactly when its memo names the agent (``LAUNCH_MEMO``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.action_ends import published_outcome
from activities.first_activation import FirstActivations
from aiops.contracts.action import WORKFLOW_TYPE
from aiops.contracts.action_start import (
    LAUNCH_MEMO,
    ActionStart,
    ActionStarted,
    inbox_attributes,
    status_at_start,
)

log = logging.getLogger("aiops.activities")


def eagerly_started(handle: object) -> bool:
    """Whether the server handed the started workflow's first task back to this process. The SDK
    says so only in an attribute its client sets on the handle (``__temporal_eagerly_started``,
    read by its own tests); were a release to drop it, starts would answer at once as before:
    slower, never wrong (tests/test_action_start.py checks that it is still there)."""
    return bool(getattr(handle, "__temporal_eagerly_started", False))


class ActionStarter:
    """``first_activations``: where the worker's runner says an eagerly started action's first
    activation has been computed; the start answers after it (activities/first_activation.py)."""

    def __init__(self, client: Client | None, first_activations: FirstActivations | None = None) -> None:
        self.client = client
        self.first_activations = first_activations

    @activity.defn
    async def start_action(self, start: ActionStart) -> ActionStarted:
        """Start the action's workflow, eagerly where this process can run it.

        Transient failures (the server unreachable, a dropped call) raise and are retried by the
        agent's retry policy; a request the server refuses as invalid is answered ``refused``, as
        no attempt could succeed."""
        if self.client is None:
            return ActionStarted(outcome="unavailable", reason="this worker has no Temporal client")
        input = start.input
        first = self.first_activations
        watch = first.expect(start.workflow_id) if first is not None else None
        try:
            handle = await self.client.start_workflow(
                WORKFLOW_TYPE,
                input,
                id=start.workflow_id,
                task_queue=start.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                priority=Priority(priority_key=start.priority_key),
                search_attributes=inbox_attributes(
                    input.action,
                    input.config.type,
                    start.requested_at,
                    input.decision.required_approvals,
                    start.inbox_summary,
                    status_at_start(input),
                ),
                memo={LAUNCH_MEMO: start.launched_by},
                static_summary=start.static_summary,
                static_details=start.static_details,
                request_eager_start=True,
            )
            if first is not None and watch is not None and eagerly_started(handle):
                # Started: a cancel from here on (the agent's run cancelled, the worker stopping)
                # only ends the wait, and the answer still says so, so an agent that hears it
                # does not take its own action for a duplicate.
                with contextlib.suppress(asyncio.CancelledError):
                    await first.computed_in_time(watch)
        except WorkflowAlreadyStartedError as already:
            return await self._own_or_duplicate(start, already.run_id)
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                return ActionStarted(outcome="refused", reason=f"the server refused the start: {err.message}")
            raise
        finally:
            if first is not None and watch is not None:  # both or neither; mypy sees them apart
                first.release(start.workflow_id, watch)
        return ActionStarted(outcome="started")

    async def _own_or_duplicate(self, start: ActionStart, run_id: str | None) -> ActionStarted:
        """The agent's own earlier start, or a duplicate: the memo tells."""
        assert self.client is not None
        described = await self.client.get_workflow_handle(start.workflow_id, run_id=run_id).describe()
        if await described.memo_value(LAUNCH_MEMO, default=None) == start.launched_by:
            log.info("action %s was started by an earlier attempt of its agent's start", start.workflow_id)
            # Its end may have reached the agent already, before the agent knew the action was its
            # own (an agent's task run again after it failed: the action's signal comes first and
            # finds no pending action). The action upserts its final status in the task that
            # signals its end, so a final status here is an end the agent may have missed, whether
            # or not the action has closed yet (it settles its notices and audit after reporting).
            outcome = published_outcome(start.workflow_id, described)
            ended = outcome if outcome is not None and outcome.status.is_final else None
            return ActionStarted(outcome="started", ended=ended)
        return ActionStarted(outcome="duplicate", reason=f"{start.workflow_id} was started before")

    def all(self) -> list[Callable[..., Any]]:
        return [self.start_action]
