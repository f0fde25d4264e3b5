"""How an action ended, as the server records it; and telling agents the ends they never heard.

An action reports its end to its agent itself: it upserts its final ``AiopsActionStatus`` and
signals ``action_finished`` in the same workflow task. A workflow closed from outside reports
nothing: ``temporal workflow terminate`` by a person, an execution timeout, a cancellation. Its
agent would keep it pending for ever, showing it in ``pending_actions`` and holding one of its
``MAX_PENDING_ACTIONS`` places. Such an action is read here as failed: it may have done part of its
work, nobody can say which, and counting it failed is what keeps the circuit breaker honest.

The health monitor asks ``report_unreported_ends`` every pass (workflows/health_monitor.py). It
sends each such action's agent an ``action_finished`` claim; the agent does not take the claim's
word for it (anyone can send that signal) but asks the server through ``action_outcome``, which
reads ``published_outcome`` below. A claim for an action the agent has already counted, or does
not know, changes nothing, so telling an agent twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from aiops.contracts import search_attributes as sa
from aiops.contracts.action import ActionOutcome, ActionStatus, unreported_ends_query
from aiops.contracts.activities import UnreportedEnds, UnreportedEndsCall
from aiops.contracts.agent import ACTION_FINISHED, agent_workflow_id

log = logging.getLogger(__name__)
# Signals in flight at once while telling agents (each a short RPC).
SIGNALS_AT_ONCE = 20

# Closed without a final status of its own: the workflow's close status in the outcome's message.
_CLOSED_AS = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.CANCELED: "canceled",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.COMPLETED: "completed",
}


def published_outcome(action_workflow_id: str, described: WorkflowExecution) -> ActionOutcome | None:
    """Where an action is: as it published it (its ``AiopsActionStatus``, upserted with the final
    status in the same task that reports it to the agent), or ``failed`` when its workflow closed
    without a final status of its own (see the module's docstring). None: it is open and
    published no status."""
    published = described.typed_search_attributes.get(sa.ACTION_STATUS)
    status = next((s for s in ActionStatus if published == s.value), None)
    message = ""
    if described.close_time is not None and (status is None or not status.is_final):
        closed_as = _CLOSED_AS.get(described.status) if described.status is not None else None
        message = (
            f"its workflow closed ({closed_as or 'closed'}) while it was "
            f"{status.value if status is not None else 'starting'}, without reporting an end"
        )
        status = ActionStatus.FAILED
    if status is None:
        return None
    final = status.is_final
    ended = described.close_time or datetime.now(UTC)
    return ActionOutcome(
        action_id=action_workflow_id,
        event_id="",
        status=status,
        success=status in (ActionStatus.SUCCEEDED, ActionStatus.VERIFIED) if final else None,
        message=message,
        duration_seconds=(ended - described.start_time).total_seconds() if final else None,
    )


async def report_unreported_ends(client: Client, call: UnreportedEndsCall) -> UnreportedEnds:
    """Tell the agent of every action on ``call.task_queue`` (or its types' queues) that closed
    since ``call.closed_since`` other than by completing (at most ``call.limit``) that it ended.
    Every pass tells all of them again, as it cannot know which agents heard already; a told agent
    that counted the end ignores the claim. Agents that are gone are skipped; nothing here fails
    the pass."""
    out = UnreportedEnds()
    query = unreported_ends_query(call.task_queue, call.closed_since)
    claims: list[tuple[str, ActionOutcome]] = []
    async for closed in client.list_workflows(query, limit=call.limit + 1):
        agent_id = closed.typed_search_attributes.get(sa.AGENT_ID)
        outcome = published_outcome(closed.id, closed)
        if agent_id and outcome is not None:
            claims.append((agent_id, outcome))
    if len(claims) > call.limit:
        claims = claims[: call.limit]
        log.warning("over %d actions closed without reporting their end: telling %d", call.limit, call.limit)

    async def tell(agent_id: str, outcome: ActionOutcome) -> None:
        try:
            await client.get_workflow_handle(agent_workflow_id(agent_id)).signal(ACTION_FINISHED, outcome)
        except RPCError as err:  # the agent is gone (stopped, or never there): nothing waits for it
            out.unreachable += 1
            log.info(
                "could not tell agent %s that action %s ended: %s", agent_id, outcome.action_id, err.message
            )
            return
        out.told += 1
        if len(out.action_ids) < UnreportedEnds.MAX_IDS:
            out.action_ids.append(outcome.action_id)

    for start in range(0, len(claims), SIGNALS_AT_ONCE):
        await asyncio.gather(*(tell(a, o) for a, o in claims[start : start + SIGNALS_AT_ONCE]))
    return out
