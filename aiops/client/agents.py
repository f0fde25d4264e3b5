"""Agents: start one (or reach it), read its status, list them, and command them.

Commands (pause, resume, stop, reset the circuit breaker) go through the agent's ``command``
update, signed when a key is at hand, so the caller learns at once whether the agent took it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    ActivityFailureError,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from aiops.client.agent_survey import STATUS_PATIENCE, AgentSurvey, survey
from aiops.client.common import Connection, no_agent, update_refused
from aiops.client.errors import (
    AgentsUnansweredError,
    AgentTypeNotServedError,
    ClientError,
    CommandRefusedError,
    ConfigRefusedError,
)
from aiops.contracts import agent as agent_contract
from aiops.contracts import search_attributes as sa
from aiops.contracts.agent import (
    COMMAND_REFUSED,
    AgentState,
    AgentStatus,
    AgentWorkflowInput,
    CommandApplied,
    CommandRequest,
    agent_workflow_id,
    hooks_task_queue,
)
from aiops.contracts.config import AgentConfig, AgentVerb
from aiops.dropped_calls import again_if_dropped
from aiops.keys import KeyFile
from workflows import approval_token
from workflows.agent.command_gate import stop_digest
from workflows.agent.workflow import AgentWorkflow

# ``ConfigActivities.validate_config``, served on each agent type's hooks queue.
VALIDATE_CONFIG_ACTIVITY = "validate_config"
# How long the agent type's config check may take on a worker (it reads, never changes anything).
CONFIG_CHECK_SECONDS = 30.0
# A refused config is not asked about again for this long (a fixed config has another digest).
REFUSED_CACHE_SECONDS = 5.0
# What a server answers when it cannot run a standalone activity: the config check is skipped.
STANDALONE_UNSUPPORTED = frozenset(
    {RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED}
)
# A worker that just started may take a moment to poll; a type nobody serves is refused after this.
SERVED_CHECK_SECONDS = 5.0
SERVED_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class FailedAgent:
    """An agent whose latest workflow failed: what ``aiops agents list --state failed`` shows."""

    agent_id: str
    type: str  # "-" when the workflow carries no agent type
    failed_at: datetime | None
    failure: str  # the agent's own account, "" when its status could not be read


class CommandOptions(TypedDict, total=False):
    """Who commands and how, as ``AgentsClient.command_request`` takes them (its defaults apply to
    what is left out): ``command`` passes them on, so the two cannot drift apart."""

    actor: str
    key: KeyFile | None
    reason: str
    drain: bool


class AgentsClient:
    """The agents of one task queue: ``client.agents`` of an ``AiopsClient``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._served_at: dict[str, float] = {}  # agent type -> when a worker was last seen serving it
        self._checked_at: dict[str, float] = {}  # config digest -> when its agent type accepted it
        self._refused: dict[str, tuple[float, str]] = {}  # config digest -> (when, why) it was refused

    async def start(
        self, config: AgentConfig, started_by: str = "", require_worker: bool = True
    ) -> WorkflowHandle[Any, Any]:
        """Start the agent, or reach it if it already runs: two starters never make two.

        Refuses at once (``AgentTypeNotServedError``) when no worker serves the agent's type;
        ``require_worker=False`` starts it anyway (it then fails after ``worker_pickup_seconds``).
        """
        if require_worker:
            await self.require_worker_for(config.type)
            await self.check_config(config)
        return await self._conn.client.start_workflow(
            AgentWorkflow.run,
            AgentWorkflowInput(config=config, started_by=started_by),
            id=agent_workflow_id(config.id),
            task_queue=self._conn.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"agent {config.id} ({config.type})",
        )

    async def check_config(self, config: AgentConfig) -> None:
        """``ConfigRefusedError`` with the agent type's own messages when it refuses ``config``.

        The very check ``aiops config apply`` runs (the ``validate_config`` activity, on a worker
        that serves the type, with that worker's environment for ``env:`` references), run here as
        a standalone activity before anything is stored or started. A server that cannot run
        standalone activities (older than 1.32, or with them disabled) is not asked: the agent's
        start then checks the config and fails with the same messages.
        """
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
        checked = self._checked_at.get(digest)
        if checked is not None and loop.time() - checked < SERVED_CACHE_SECONDS:
            return  # the same config, accepted a moment ago (a storm of sends with a config)
        refused = self._refused.get(digest)
        if refused is not None and loop.time() - refused[0] < REFUSED_CACHE_SECONDS:
            raise ConfigRefusedError(refused[1])  # refused a moment ago: not one activity per send
        try:
            problems = await self._conn.client.execute_activity(
                VALIDATE_CONFIG_ACTIVITY,
                config,
                id=f"validate-config-{config.id}-{uuid.uuid4().hex[:12]}",
                task_queue=hooks_task_queue(self._conn.task_queue, config.type),
                start_to_close_timeout=timedelta(seconds=CONFIG_CHECK_SECONDS),
                schedule_to_close_timeout=timedelta(seconds=2 * CONFIG_CHECK_SECONDS),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=["NotFoundError"]),
                result_type=list[str],
            )
        except RPCError as err:
            if err.status in STANDALONE_UNSUPPORTED:
                return
            raise
        except ActivityFailureError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "NotFoundError":
                return  # a worker of this type without the check (an older build): its start checks
            why = cause or err
            raise ClientError(f"could not check the config of agent {config.id!r}: {why}") from err
        if problems:
            listed = "; ".join(problems[:20])
            message = (
                f"agent type {config.type!r} refuses the config of agent {config.id!r}, so nothing was "
                f"stored or started: {listed}"
            )
            if len(self._refused) > 1000:
                self._refused.clear()
            self._refused[digest] = (loop.time(), message)
            raise ConfigRefusedError(message)
        if len(self._checked_at) > 1000:
            self._checked_at.clear()
        self._checked_at[digest] = loop.time()

    def handle(self, agent_id: str) -> WorkflowHandle[Any, Any]:
        return self._conn.agent_handle(agent_id)

    async def require_worker_for(self, agent_type: str) -> None:
        """Raise ``AgentTypeNotServedError`` unless a worker polls this agent type's hooks queue."""
        loop = asyncio.get_running_loop()
        seen = self._served_at.get(agent_type)
        if seen is not None and loop.time() - seen < SERVED_CACHE_SECONDS:
            return
        client, task_queue = self._conn.client, self._conn.task_queue
        queue = hooks_task_queue(task_queue, agent_type)
        deadline = loop.time() + SERVED_CHECK_SECONDS
        while True:
            try:
                request = DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
                # A service call, below the client interceptor: a read, so made again here if dropped.
                describe = functools.partial(client.workflow_service.describe_task_queue, request)
                answer = await again_if_dropped("describe task queue", describe)
            except RPCError as err:
                if err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED):
                    return  # this server (or this identity) cannot tell: the agent's start will say
                raise
            if answer.pollers:
                self._served_at[agent_type] = loop.time()
                return
            if loop.time() > deadline:
                raise AgentTypeNotServedError(
                    f"no worker serves agent type {agent_type!r} on task queue {task_queue!r} "
                    f"(nothing polls {queue!r}); start a worker that loads it: "
                    "worker.py --agent-module MODULE (or AIOPS_AGENT_MODULES)"
                )
            await asyncio.sleep(0.2)

    # ----- reading ------------------------------------------------------------------------------

    async def status(self, agent_id: str) -> AgentStatus:
        try:
            return await self.handle(agent_id).query(AgentWorkflow.status)
        except RPCError as err:
            raise no_agent(agent_id, err) from err

    async def is_running(self, agent_id: str) -> bool:
        """Whether the agent's workflow is running now (a stopped or failed agent is not)."""
        try:
            description = await self.handle(agent_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    async def ids(self, state: AgentState | None = None, this_queue: bool = False) -> list[str]:
        """Ids of the running agents (on any task queue, or only on this client's), optionally in
        one state."""
        queue = self._conn.task_queue if this_queue else None
        return await self._ids(agent_contract.agents_query(queue, state))

    async def statuses(
        self, state: AgentState | None = None, patience: timedelta = STATUS_PATIENCE
    ) -> list[AgentStatus]:
        """The status of every agent running on this client's task queue (optionally in one
        state), sorted by id. Raises ``AgentsUnansweredError`` (which carries the rest) when some
        did not answer within ``patience``; ``survey`` returns both instead."""
        found = await self.survey(state, patience)
        if found.unanswered:
            raise AgentsUnansweredError(found)
        return found.statuses

    async def survey(
        self, state: AgentState | None = None, patience: timedelta = STATUS_PATIENCE
    ) -> AgentSurvey:
        """Every running agent's status (optionally in one state), each asked at once with its own
        ``patience``, and the agents that did not answer, with why (``aiops/client/agent_survey.py``)."""
        ids = await self._ids(agent_contract.agents_query(self._conn.task_queue, state))
        return await survey(self._conn, ids, patience)

    async def failed(self, since: datetime) -> list[FailedAgent]:
        """Agents on this task queue whose latest workflow failed since ``since`` (from visibility),
        each with the failure its status reports; sorted by id."""
        query = agent_contract.agents_query(self._conn.task_queue, failed_since=since)
        found: list[FailedAgent] = []
        async for w in self._conn.client.list_workflows(query):
            agent_id = agent_contract.agent_id_of(w.id)
            if agent_id is None or w.status != WorkflowExecutionStatus.FAILED:
                continue
            failure = ""
            try:  # a closed workflow still answers its status query (from its history)
                status = await self.status(agent_id)
                if status.state == AgentState.FAILED:
                    failure = status.failure or ""
            except Exception:  # the listing stands without the detail
                pass
            agent_type = w.typed_search_attributes.get(sa.AGENT_TYPE) or "-"
            found.append(FailedAgent(agent_id, agent_type, w.close_time, failure))
        return sorted(found, key=lambda f: f.agent_id)

    async def _ids(self, query: str) -> list[str]:
        found = [agent_contract.agent_id_of(w.id) async for w in self._conn.client.list_workflows(query)]
        return [a for a in found if a is not None]

    # ----- commands -----------------------------------------------------------------------------

    async def pause(self, agent_id: str, actor: str = "", key: KeyFile | None = None) -> CommandApplied:
        """Pause: events queue up, approved actions not yet started wait."""
        return await self.command(agent_id, AgentVerb.PAUSE, actor=actor, key=key)

    async def resume(self, agent_id: str, actor: str = "", key: KeyFile | None = None) -> CommandApplied:
        return await self.command(agent_id, AgentVerb.RESUME, actor=actor, key=key)

    async def stop(
        self, agent_id: str, reason: str = "", drain: bool = True, actor: str = "", key: KeyFile | None = None
    ) -> CommandApplied:
        """Stop after deciding the queued events (``drain``), or now, aborting actions not yet
        executing."""
        return await self.command(agent_id, AgentVerb.STOP, actor=actor, key=key, reason=reason, drain=drain)

    async def reset_circuit_breaker(
        self, agent_id: str, by: str = "", key: KeyFile | None = None
    ) -> CommandApplied:
        return await self.command(agent_id, AgentVerb.RESET_CIRCUIT_BREAKER, actor=by, key=key)

    async def command(
        self, agent_id: str, verb: AgentVerb, **options: Unpack[CommandOptions]
    ) -> CommandApplied:
        """Ask the agent, through its ``command`` update, and learn what happened; a refusal
        (unsigned, forged, no role, ...) raises ``CommandRefusedError`` with the reason, which
        the agent has audited. Signed with ``key`` (or this client's key when it is the actor's);
        the options are ``command_request``'s."""
        return await self.send_command(agent_id, self.command_request(agent_id, verb, **options))

    async def send_command(self, agent_id: str, request: CommandRequest) -> CommandApplied:
        """Send a command as it is (signed by whoever made it: what the REST API relays)."""
        try:
            return await self.handle(agent_id).execute_update(AgentWorkflow.command, request)
        except WorkflowUpdateFailedError as err:
            what = f"the {request.verb.value}"
            raise update_refused(err, COMMAND_REFUSED, CommandRefusedError, what) from err
        except RPCError as err:
            raise no_agent(agent_id, err) from err

    def command_request(
        self,
        agent_id: str,
        verb: AgentVerb,
        actor: str = "",
        key: KeyFile | None = None,
        reason: str = "",
        drain: bool = True,
        lifetime_seconds: int = approval_token.DEFAULT_LIFETIME_SECONDS,
    ) -> CommandRequest:
        """The command as sent (what ``aiops agents token`` prints for the Web UI or the
        ``temporal`` CLI): signed when a key is given or this client's key is the actor's."""
        name, key = self._conn.signer(actor, key)
        credential = None
        if key is not None:
            digest = stop_digest(drain) if verb == AgentVerb.STOP else None
            credential = approval_token.sign(
                key.key(), key.approver, agent_workflow_id(agent_id), verb.value, digest, datetime.now(UTC),
                lifetime_seconds=lifetime_seconds,
            )  # fmt: skip
        return CommandRequest(verb=verb, actor=name, credential=credential, reason=reason, drain=drain)
