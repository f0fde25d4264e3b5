"""Every agent's status at once, without one silent agent holding up the rest.

A status is a query, which the worker running the agent answers. When the workers of one agent's
task queue are down (or that agent's workflow task keeps failing), its query waits out the whole
call deadline and fails: listing all agents used to wait about 30 s and then fail with that one
error, so one broken agent hid every healthy one. A survey asks every agent at once, each with
its own short patience, and returns the answers with the agents that did not answer, each with
why, for the caller to show beside them (``aiops agents list`` warns on stderr, ``GET /v1/agents``
names them in a header).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from aiops.contracts.agent import AgentStatus
from aiops.dropped_calls import CALL_TIMED_OUT
from workflows.agent.workflow import AgentWorkflow

if TYPE_CHECKING:
    from aiops.client.common import Connection

# How long one agent's status query may take in a survey before it is reported as unanswered. A
# worker answers a query of a cached agent in milliseconds, and a query waits behind the agent's
# current workflow task: a few seconds covers a busy worker, not a missing one.
STATUS_PATIENCE = timedelta(seconds=5)
REASON_CHARS = 300  # of a failed query's text, in a warning line or the gateway's log


class UnansweredAgent(NamedTuple):
    agent_id: str
    reason: str


class AgentSurvey(NamedTuple):
    statuses: list[AgentStatus]  # sorted by agent id
    unanswered: list[UnansweredAgent]  # sorted by agent id


async def survey(
    conn: Connection, agent_ids: list[str], patience: timedelta = STATUS_PATIENCE
) -> AgentSurvey:
    """Ask each agent for its status at once, ``patience`` each. An agent that ended between the
    listing and its query is left out; one that did not answer is in ``unanswered``."""

    async def ask(agent_id: str) -> AgentStatus:
        return await conn.agent_handle(agent_id).query(AgentWorkflow.status, rpc_timeout=patience)

    found = await asyncio.gather(*(ask(agent_id) for agent_id in agent_ids), return_exceptions=True)
    statuses: list[AgentStatus] = []
    unanswered: list[UnansweredAgent] = []
    for agent_id, result in zip(agent_ids, found, strict=True):
        if isinstance(result, AgentStatus):
            statuses.append(result)
        elif isinstance(result, asyncio.CancelledError):
            raise result
        elif isinstance(result, RPCError) and result.status == RPCStatusCode.NOT_FOUND:
            continue  # it ended and is gone since the listing
        elif isinstance(result, BaseException):
            unanswered.append(UnansweredAgent(agent_id, why(result, conn.task_queue, patience)))
    return AgentSurvey(
        sorted(statuses, key=lambda s: s.agent_id), sorted(unanswered, key=lambda u: u.agent_id)
    )


def why(err: BaseException, task_queue: str, patience: timedelta) -> str:
    """What a failed status query says, in the operator's words."""
    timed_out = isinstance(err, RPCError) and (
        err.status == RPCStatusCode.DEADLINE_EXCEEDED
        or (err.status == RPCStatusCode.CANCELLED and CALL_TIMED_OUT in err.message)
    )
    if timed_out:
        return (
            f"no answer to its status query within {patience.total_seconds():g}s: is a worker "
            f"running for task queue {task_queue}?"
        )
    # The failure's text comes from the worker (a workflow's own exception, say): one line, bounded.
    said = " ".join(str(err).split())[:REASON_CHARS]
    if isinstance(err, WorkflowQueryFailedError):
        return f"its status query failed: {said}"
    return f"its status query failed: {type(err).__name__}: {said}"
