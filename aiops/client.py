"""AiopsClient: the one typed facade over Temporal for operators, ingress, the demo and tests.

Nobody else spells workflow ids, signal names or search-attribute queries.
Errors say what to do next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.database.audit_log import AuditLog, AuditRow, ChainReport
from activities.database.config_store import ConfigStore
from activities.database.pool import DATABASE_URL_ENV, database_url, open_pool
from agents.config_diff import ConfigChange, diff_configs
from aiops.connection import connect
from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import (
    APPROVAL_REFUSED,
    ActionRecord,
    ActionStatus,
    ApprovalRequest,
    DecisionRequest,
    action_workflow_id,
)
from aiops.contracts.activities import StoredConfig
from aiops.contracts.agent import (
    COMMAND_REFUSED,
    DEFAULT_TASK_QUEUE,
    MAX_EVENTS_PER_INTAKE,
    AgentState,
    AgentStatus,
    AgentWorkflowInput,
    CommandApplied,
    CommandRequest,
    ConfigApplied,
    EventAnswer,
    EventOutcome,
    IntakeRequest,
    ReconfigureRequest,
    agent_workflow_id,
    hooks_task_queue,
)
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import AGENT_ID_PATTERN, AgentConfig, AgentVerb, SystemEvent
from aiops.keys import KeyFile
from workflows import approval_token
from workflows.action_workflow import ActionWorkflow
from workflows.agent_workflow import AgentWorkflow
from workflows.command_gate import reconfigure_digest, stop_digest

__all__ = [
    "ActionNotFoundError",
    "AgentNotRunningError",
    "AgentTypeNotServedError",
    "AiopsClient",
    "AiopsError",
    "ClientError",
    "ConfigRefusedError",
    "EventsRejectedError",
    "IntakeRefusedError",
]


class ClientError(AiopsError):
    """A refused or failed operator request; the message says what to do."""


class AgentNotRunningError(ClientError):
    pass


class ActionNotFoundError(ClientError):
    pass


class ConfigRefusedError(ClientError):
    pass


class CommandRefusedError(ClientError):
    """The agent refused a command (and audited the refusal); the message says why."""


class AgentTypeNotServedError(ClientError):
    """No worker polls the task queue where this agent type's code runs."""


class IntakeRefusedError(ClientError):
    """The agent could not take a batch (stopping, or still full after the patience ran out)."""


class EventsRejectedError(ClientError):
    """Some events were not taken; ``rejected`` says which and why, ``answers`` has them all."""

    def __init__(self, rejected: list[EventAnswer], answers: list[EventAnswer]) -> None:
        self.rejected = rejected
        self.answers = answers
        reasons = "; ".join(f"{a.event_id or '?'}: {a.reason}" for a in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        super().__init__(f"{len(rejected)} of {len(answers)} event(s) rejected: {reasons}{more}")


# How long a batch the agent cannot take yet (queue full, continue-as-new) is sent again.
INTAKE_PATIENCE_SECONDS = 60.0
# How long one intake call waits for the server's answer before it is tried again.
INTAKE_RPC_TIMEOUT_SECONDS = 10.0
RETRYABLE_RPC = frozenset(
    {
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.ABORTED,
        # "workflow not ready": a workflow task failed under the storm (new events arrived while it
        # completed) or the run is closing for continue-as-new; the next attempt reaches it.
        RPCStatusCode.FAILED_PRECONDITION,
        # The server's limit of in-flight updates per workflow (10 by default) was reached.
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)
# Intake calls this client keeps in flight per agent: under the server's limit of 10 in-flight
# updates per workflow, so concurrent senders queue here instead of being refused there.
INTAKE_IN_FLIGHT_PER_AGENT = 8


# A worker that just started may take a moment to poll; a type nobody serves is refused after this.
SERVED_CHECK_SECONDS = 5.0
SERVED_CACHE_SECONDS = 60.0


class AiopsClient:
    """``pool`` (PostgreSQL) is needed only to read config history and the audit trail."""

    def __init__(
        self,
        client: Client,
        task_queue: str = DEFAULT_TASK_QUEUE,
        pool: asyncpg.Pool | None = None,
        actor: str = "",
        key: KeyFile | None = None,
    ) -> None:
        """``actor`` and ``key``: who this client's agent commands and config changes come from
        when a call does not say (with ``key`` they are signed, as a production config needs)."""
        self.client = client
        self.task_queue = task_queue
        self.pool = pool
        self.actor = key.approver if key is not None and not actor else actor
        self.key = key
        self._served_at: dict[str, float] = {}  # agent type -> when a worker was last seen serving it
        self._intake_gates: dict[str, asyncio.Semaphore] = {}  # agent id -> in-flight intake calls
        self._batchers: dict[str, _Batcher] = {}  # agent id -> single sends waiting to go together

    @classmethod
    async def connect(cls, task_queue: str = DEFAULT_TASK_QUEUE, **kwargs: Any) -> AiopsClient:
        """Connect with the worker's environment settings (and ``DATABASE_URL`` when set)."""
        url = database_url()
        pool = await open_pool(url, attempts=3, max_size=2) if url else None
        return cls(await connect(**kwargs), task_queue, pool)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    # ----- agents --------------------------------------------------------------

    async def start_agent(
        self, config: AgentConfig, started_by: str = "", require_worker: bool = True
    ) -> WorkflowHandle[Any, Any]:
        """Start the agent, or reach it if it already runs: two starters never make two.

        Refuses at once (``AgentTypeNotServedError``) when no worker serves the agent's type;
        ``require_worker=False`` starts it anyway (it then fails after ``worker_pickup_seconds``).
        """
        if require_worker:
            await self.require_worker_for(config.type)
        return await self.client.start_workflow(
            AgentWorkflow.run,
            AgentWorkflowInput(config=config, started_by=started_by),
            id=agent_workflow_id(config.id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"agent {config.id} ({config.type})",
        )

    def agent_handle(self, agent_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(agent_workflow_id(agent_id))

    async def send_event(
        self,
        agent_id: str,
        event: SystemEvent | dict[str, Any],
        config: AgentConfig | None = None,
        require_worker: bool = True,
    ) -> EventAnswer:
        """Deliver one event and return its answer; raises ``EventsRejectedError`` if it was not
        taken. With ``config``, the agent is started first if it is not running.

        Concurrent calls for one agent are sent together: while one intake call is in flight, the
        events that arrive meanwhile wait and go as the next batch, so a storm of single sends
        costs a few updates, not one each (the server takes 10 in-flight updates per workflow).
        """
        if config is not None:
            [answer] = await self.send_events(agent_id, [event], config, require_worker=require_worker)
            return answer
        batcher = self._batchers.get(agent_id)
        if batcher is None:
            batcher = self._batchers[agent_id] = _Batcher(lambda batch: self.submit_events(agent_id, batch))
        answer = await batcher.add(_jsonable(event))
        if answer.outcome == EventOutcome.REJECTED:
            raise EventsRejectedError([answer], [answer])
        return answer

    async def send_events(
        self,
        agent_id: str,
        events: Iterable[SystemEvent | dict[str, Any]],
        config: AgentConfig | None = None,
        batch_size: int = MAX_EVENTS_PER_INTAKE,
        require_worker: bool = True,
        patience_seconds: float = INTAKE_PATIENCE_SECONDS,
        rpc_timeout_seconds: float = INTAKE_RPC_TIMEOUT_SECONDS,
    ) -> list[EventAnswer]:
        """Deliver events and return one answer each (accepted, duplicate or grouped); raises
        ``EventsRejectedError`` (with every answer) when any event was rejected, so no event is
        reported taken that was not. See ``submit_events`` for the answers without raising."""
        answers = await self.submit_events(
            agent_id, events, config, batch_size, require_worker, patience_seconds, rpc_timeout_seconds
        )
        rejected = [a for a in answers if a.outcome == EventOutcome.REJECTED]
        if rejected:
            raise EventsRejectedError(rejected, answers)
        return answers

    async def submit_events(
        self,
        agent_id: str,
        events: Iterable[SystemEvent | dict[str, Any]],
        config: AgentConfig | None = None,
        batch_size: int = MAX_EVENTS_PER_INTAKE,
        require_worker: bool = True,
        patience_seconds: float = INTAKE_PATIENCE_SECONDS,
        rpc_timeout_seconds: float = INTAKE_RPC_TIMEOUT_SECONDS,
    ) -> list[EventAnswer]:
        """Deliver events through the agent's ``intake`` update: one answer per event, in order.

        A batch the agent cannot take now (queue full, a continue-as-new under way) is sent again
        with backoff for up to ``patience_seconds``, then ``IntakeRefusedError``; nothing is ever
        reported taken that the agent did not take. With ``config``, the agent is started first
        if it is not running (update-with-start: two starters never make two agents).
        """
        if config is not None:
            if config.id != agent_id:
                raise ClientError(f"config is for agent {config.id!r}, not {agent_id!r}")
            if require_worker:
                await self.require_worker_for(config.type)
        size = max(1, min(batch_size, MAX_EVENTS_PER_INTAKE))
        answers: list[EventAnswer] = []
        batch: list[Any] = []
        for event in events:
            batch.append(_jsonable(event))
            if len(batch) >= size:
                answers += await self._intake(agent_id, batch, config, patience_seconds, rpc_timeout_seconds)
                batch = []
        if batch:
            answers += await self._intake(agent_id, batch, config, patience_seconds, rpc_timeout_seconds)
        return answers

    async def _intake(
        self, agent_id: str, batch: list[Any], config: AgentConfig | None, patience: float, rpc_timeout: float
    ) -> list[EventAnswer]:
        """One batch, split when the agent has room for only part of it; answers in order."""
        answers: list[EventAnswer] = []
        rest = batch
        while rest:
            taken, room = await self._intake_once(agent_id, rest, config, patience, rpc_timeout)
            if taken is not None:
                answers += taken
                rest = rest[len(taken) :]
            else:  # room for part of the batch: send that part first
                answers += await self._intake(agent_id, rest[:room], config, patience, rpc_timeout)
                rest = rest[room:]
        return answers

    async def _intake_once(
        self, agent_id: str, batch: list[Any], config: AgentConfig | None, patience: float, rpc_timeout: float
    ) -> tuple[list[EventAnswer] | None, int]:
        request = IntakeRequest(events=batch, compact=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        delay = 0.05
        gate = self._intake_gates.setdefault(agent_id, asyncio.Semaphore(INTAKE_IN_FLIGHT_PER_AGENT))
        while True:
            try:
                async with gate:
                    return await self._intake_call(agent_id, request, config, rpc_timeout), len(batch)
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == agent_contract.INTAKE_REFUSED):
                    raise ClientError(f"agent {agent_id} could not take the events: {cause}") from err
                said = cause.details[0] if cause.details else None
                retryable = isinstance(said, dict) and bool(said.get("retryable"))
                room = int(said.get("room", 0)) if isinstance(said, dict) else 0
                if retryable and 0 < room < len(batch):
                    return None, room
                if not retryable or loop.time() > deadline:
                    raise IntakeRefusedError(f"agent {agent_id} refused the events: {cause.message}") from err
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                if loop.time() > deadline:  # the server did not answer in time: unreachable or busy
                    raise
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND and config is None:
                    raise self._no_agent(agent_id, err) from err
                # The run closed under the update (continue-as-new) or the server was busy: again.
                if loop.time() > deadline or err.status not in RETRYABLE_RPC:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _intake_call(
        self, agent_id: str, request: IntakeRequest, config: AgentConfig | None, rpc_timeout: float
    ) -> list[EventAnswer]:
        """One intake update (update-with-start when ``config`` is given)."""
        if config is None:
            answer = await self.agent_handle(agent_id).execute_update(
                AgentWorkflow.intake, request, rpc_timeout=timedelta(seconds=rpc_timeout)
            )
        else:
            start = WithStartWorkflowOperation(
                AgentWorkflow.run,
                AgentWorkflowInput(config=config),
                id=agent_workflow_id(agent_id),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            answer = await self.client.execute_update_with_start_workflow(
                AgentWorkflow.intake,
                request,
                start_workflow_operation=start,
                rpc_timeout=timedelta(seconds=rpc_timeout),
            )
        return answer.expand(request.events)

    async def require_worker_for(self, agent_type: str) -> None:
        """Raise ``AgentTypeNotServedError`` unless a worker polls this agent type's hooks queue."""
        loop = asyncio.get_running_loop()
        seen = self._served_at.get(agent_type)
        if seen is not None and loop.time() - seen < SERVED_CACHE_SECONDS:
            return
        queue = hooks_task_queue(self.task_queue, agent_type)
        deadline = loop.time() + SERVED_CHECK_SECONDS
        while True:
            try:
                answer = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                    )
                )
            except RPCError as err:
                if err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED):
                    return  # this server (or this identity) cannot tell: the agent's start will say
                raise
            if answer.pollers:
                self._served_at[agent_type] = loop.time()
                return
            if loop.time() > deadline:
                raise AgentTypeNotServedError(
                    f"no worker serves agent type {agent_type!r} on task queue {self.task_queue!r} "
                    f"(nothing polls {queue!r}); start a worker that loads it: "
                    "worker.py --agent-module MODULE (or AIOPS_AGENT_MODULES)"
                )
            await asyncio.sleep(0.2)

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
        self,
        agent_id: str,
        verb: AgentVerb,
        actor: str = "",
        key: KeyFile | None = None,
        reason: str = "",
        drain: bool = True,
    ) -> CommandApplied:
        """Ask the agent, through its ``command`` update, and learn what happened; a refusal
        (unsigned, forged, no role, ...) raises ``CommandRefusedError`` with the reason, which
        the agent has audited. Signed with ``key`` (or this client's key when it is the actor's)."""
        request = self.command_request(agent_id, verb, actor=actor, key=key, reason=reason, drain=drain)
        try:
            return await self.agent_handle(agent_id).execute_update(AgentWorkflow.command, request)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == COMMAND_REFUSED:
                raise CommandRefusedError(f"refused: {cause.message}") from err
            raise ClientError(f"the {verb.value} could not be applied: {cause}") from err
        except RPCError as err:
            raise self._no_agent(agent_id, err) from err

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
        name, key = self._signer(actor, key)
        credential = None
        if key is not None:
            digest = stop_digest(drain) if verb == AgentVerb.STOP else None
            credential = approval_token.sign(
                key.key(), key.approver, agent_workflow_id(agent_id), verb.value, digest, datetime.now(UTC),
                lifetime_seconds=lifetime_seconds,
            )  # fmt: skip
        return CommandRequest(verb=verb, actor=name, credential=credential, reason=reason, drain=drain)

    def _signer(self, actor: str, key: KeyFile | None) -> tuple[str, KeyFile | None]:
        """Who asks, and the key that proves it: the call's, else this client's if it is theirs."""
        if key is not None:
            if actor and actor != key.approver:
                raise ClientError(f"refused: the key is {key.approver}'s, not {actor}'s")
            return key.approver, key
        name = actor or self.actor
        own = self.key if self.key is not None and self.key.approver == name else None
        return name, own

    async def status(self, agent_id: str) -> AgentStatus:
        try:
            return await self.agent_handle(agent_id).query(AgentWorkflow.status)
        except RPCError as err:
            raise self._no_agent(agent_id, err) from err

    async def list_agents(self, state: AgentState | None = None) -> list[str]:
        """Ids of the running agents (on any task queue), optionally in one state."""
        return await self._agent_ids(agent_contract.agents_query(state=state))

    async def _agent_ids(self, query: str) -> list[str]:
        found = [agent_contract.agent_id_of(w.id) async for w in self.client.list_workflows(query)]
        return [a for a in found if a is not None]

    # ----- actions -------------------------------------------------------------

    def action_handle(self, action_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(action_id)

    @staticmethod
    def action_id(agent_id: str, event_id: str) -> str:
        return action_workflow_id(agent_id, event_id)

    async def action(self, action_id: str) -> ActionRecord:
        try:
            return await self.action_handle(action_id).query(ActionWorkflow.status)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ActionNotFoundError(
                    f"no action {action_id!r}; list the waiting ones with `aiops approvals list`"
                ) from err
            raise

    async def wait_for_action(self, action_id: str, appear_within: float = 10.0) -> ActionRecord:
        """Block until the action workflow has ended; return its final record.

        The action may not exist yet when its event was only just sent, so a
        missing action is awaited for ``appear_within`` seconds before it is an error.
        """
        handle = self.client.get_workflow_handle(action_id, result_type=ActionRecord)
        deadline = asyncio.get_running_loop().time() + appear_within
        while True:
            try:
                return await handle.result()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise ActionNotFoundError(f"no action {action_id!r}") from err
                await asyncio.sleep(0.1)

    async def pending_approvals(self, agent_id: str | None = None) -> list[str]:
        """Ids of the actions waiting for approval (on any task queue), optionally of one agent."""
        query = action_contract.pending_approvals_query(agent_id=_checked_agent_id(agent_id))
        return [w.id async for w in self.client.list_workflows(query)]

    async def approve(
        self,
        action_id: str,
        approver: str | None = None,
        comment: str = "",
        plan_digest: str | None = None,
        key: KeyFile | None = None,
    ) -> ActionRecord:
        """Approve as ``approver``; with ``key`` the decision is signed (and ``approver`` defaults
        to the key's), binding it to this action and its current plan."""
        return await self._decide(action_id, True, approver, comment, plan_digest, key)

    async def reject(
        self, action_id: str, approver: str | None = None, comment: str = "", key: KeyFile | None = None
    ) -> ActionRecord:
        return await self._decide(action_id, False, approver, comment, None, key)

    async def decision_token(
        self,
        action_id: str,
        key: KeyFile,
        approve: bool = True,
        plan_digest: str | None = None,
        lifetime_seconds: int = approval_token.DEFAULT_LIFETIME_SECONDS,
    ) -> ApprovalRequest:
        """A signed decision for ``action_id`` (what ``aiops approvals token`` prints, for the Web
        UI's Send a Signal box or ``temporal workflow signal --input``). An approval is bound
        to the plan the action holds now (or to ``plan_digest``, refused if that is not it)."""
        digest = None
        if approve:
            digest = (await self.action(action_id)).plan_digest
            if plan_digest is not None and plan_digest != digest:
                raise ClientError(
                    f"refused: the plan changed since it was reviewed (digest {plan_digest[:12]} given, "
                    f"current {str(digest)[:12]}); review the current plan and decide again"
                )
        token = approval_token.sign(
            key.key(),
            key.approver,
            action_id,
            "approve" if approve else "reject",
            digest,
            datetime.now(UTC),
            lifetime_seconds=lifetime_seconds,
        )
        return ApprovalRequest(approver=key.approver, credential=token)

    async def _decide(
        self,
        action_id: str,
        approve: bool,
        approver: str | None,
        comment: str,
        plan_digest: str | None,
        key: KeyFile | None,
    ) -> ActionRecord:
        """Decide through the ``decide`` update, so a refusal comes back at once with its reason."""
        credential = None
        if key is not None:
            if approver is not None and approver != key.approver:
                raise ClientError(f"refused: the key is {key.approver}'s, not {approver}'s")
            signed = await self.decision_token(action_id, key, approve, plan_digest)
            approver, credential = key.approver, signed.credential
        if not approver:
            raise ClientError("refused: say who decides (an approver name, or a key file)")
        request = DecisionRequest(
            approve=approve,
            approver=approver,
            comment=comment,
            plan_digest=plan_digest,
            credential=credential,
        )
        try:
            return await self.action_handle(action_id).execute_update(ActionWorkflow.decide, request)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == APPROVAL_REFUSED:
                raise ClientError(f"refused: {cause.message}") from err
            raise ClientError(f"the decision could not be applied: {cause}") from err
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            record = await self.action(action_id)  # raises ActionNotFoundError if it never existed
            raise ClientError(
                f"refused: action {action_id} is no longer pending approval (it is {record.status.value})"
            ) from err

    async def signal_approval(self, action_id: str, request: ApprovalRequest, approve: bool = True) -> None:
        """The fire-and-forget path (what the Web UI and ``temporal workflow signal`` use)."""
        signal = ActionWorkflow.approve if approve else ActionWorkflow.reject
        await self.action_handle(action_id).signal(signal, request.model_dump(exclude_none=True))

    # ----- configuration -------------------------------------------------------

    async def apply_config(
        self, config: AgentConfig, author: str = "", comment: str = "", key: KeyFile | None = None
    ) -> ConfigApplied:
        """Validate on a worker, store as the next version, and hot-reload the running agent."""
        author, key = self._signer(author, key)
        request = ReconfigureRequest(config=config, author=author, comment=comment, actor=author)
        return await self._reconfigure(config.id, request, key)

    async def rollback_config(
        self, agent_id: str, version: int, author: str = "", comment: str = "", key: KeyFile | None = None
    ) -> ConfigApplied:
        """Store a copy of ``version`` as the next version and apply it."""
        author, key = self._signer(author, key)
        request = ReconfigureRequest(rollback_to=version, author=author, comment=comment, actor=author)
        return await self._reconfigure(agent_id, request, key)

    async def _reconfigure(
        self, agent_id: str, request: ReconfigureRequest, key: KeyFile | None = None
    ) -> ConfigApplied:
        if key is not None:  # bound to this agent and exactly this change
            digest = reconfigure_digest(request)
            credential = approval_token.sign(
                key.key(), key.approver, agent_workflow_id(agent_id), "reconfigure", digest, datetime.now(UTC)
            )
            request = request.model_copy(update={"credential": credential})
        try:
            return await self.agent_handle(agent_id).execute_update(
                AgentWorkflow.reconfigure, request.model_dump(mode="json", exclude_none=True)
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ConfigRefusedError(message) from err
        except RPCError as err:
            raise self._no_agent(agent_id, err) from err

    async def config_history(self, agent_id: str, limit: int = 100) -> list[StoredConfig]:
        """Stored versions, newest first."""
        return await ConfigStore(self._pool()).history(agent_id, limit)

    async def config_version(self, agent_id: str, version: int) -> StoredConfig:
        stored = await ConfigStore(self._pool()).get(agent_id, version)
        if stored is None:
            raise ClientError(
                f"agent {agent_id!r} has no config version {version}; see `aiops config history {agent_id}`"
            )
        return stored

    async def config_diff(self, agent_id: str, old: int, new: int) -> list[ConfigChange]:
        before = await self.config_version(agent_id, old)
        after = await self.config_version(agent_id, new)
        return diff_configs(before.config, after.config)

    # ----- audit ---------------------------------------------------------------

    async def audit_trail(
        self,
        agent_id: str | None = None,
        action_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        return await AuditLog(self._pool()).rows(agent_id, action_id, since, until, limit, newest_first)

    async def verify_audit(self, agent_id: str | None = None) -> list[ChainReport]:
        """Check the hash chain of one agent, or of every agent in the log."""
        log = AuditLog(self._pool())
        agents = [agent_id] if agent_id else await log.agents()
        return [await log.verify(a) for a in agents]

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise ClientError(
                f"set {DATABASE_URL_ENV} to the PostgreSQL the workers use to read config history and audit"
            )
        return self.pool

    # ----- plumbing ------------------------------------------------------------

    @staticmethod
    def _no_agent(agent_id: str, err: RPCError) -> Exception:
        if err.status == RPCStatusCode.NOT_FOUND:
            return AgentNotRunningError(
                f"no agent named {agent_id!r} is running; start it with its config "
                f"(AiopsClient.start_agent, or send the event with a config to start it)"
            )
        return err

    # ----- operator conveniences (CLI) -----

    async def agent_is_running(self, agent_id: str) -> bool:
        """Whether the agent's workflow is running now (a stopped or failed agent is not)."""
        from temporalio.client import WorkflowExecutionStatus

        try:
            description = await self.agent_handle(agent_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    async def agent_statuses(self, state: AgentState | None = None) -> list[AgentStatus]:
        """The status of every agent running on this client's task queue (optionally in one state)."""
        ids = await self._agent_ids(agent_contract.agents_query(self.task_queue, state))
        found = await asyncio.gather(*(self.status(agent_id) for agent_id in ids), return_exceptions=True)
        statuses = []
        for result in found:
            if isinstance(result, AgentNotRunningError):
                continue  # it ended between the listing and the query
            if isinstance(result, BaseException):
                raise result
            statuses.append(result)
        return sorted(statuses, key=lambda s: s.agent_id)

    async def latest_config(self, agent_id: str) -> StoredConfig:
        """The agent's newest stored config version."""
        history = await self.config_history(agent_id, limit=1)
        if not history:
            raise ClientError(
                f"agent {agent_id!r} has no stored config; start it with its config file "
                "(`aiops agents start --config FILE.json`)"
            )
        return history[0]

    async def approval_inbox(self, agent_id: str | None = None) -> list[tuple[str, ActionRecord]]:
        """``(action id, record)`` of every action on this task queue waiting for approval, oldest first."""
        query = action_contract.pending_approvals_query(self.task_queue, _checked_agent_id(agent_id))
        ids = [w.id async for w in self.client.list_workflows(query)]
        found = await asyncio.gather(*(self.action(action_id) for action_id in ids), return_exceptions=True)
        inbox = []
        for action_id, result in zip(ids, found, strict=True):
            if isinstance(result, ActionNotFoundError):
                continue
            if isinstance(result, BaseException):
                raise result
            if result.status == ActionStatus.PENDING_APPROVAL:  # the listing lags a decision
                inbox.append((action_id, result))
        return sorted(inbox, key=lambda item: (item[1].event.timestamp, item[0]))


def _jsonable(event: SystemEvent | dict[str, Any]) -> Any:
    return event.model_dump(mode="json") if isinstance(event, SystemEvent) else event


def _checked_agent_id(agent_id: str | None) -> str | None:
    if agent_id and not AGENT_ID_PATTERN.match(agent_id):
        raise ClientError(f"{agent_id!r} is not a valid agent id")
    return agent_id or None


class _Batcher:
    """Single events for one agent, sent together: one intake call in flight, the rest gather."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[list[EventAnswer]]]) -> None:
        self._send = send
        self._waiting: list[tuple[Any, asyncio.Future[EventAnswer]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def add(self, payload: Any) -> EventAnswer:
        future: asyncio.Future[EventAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.append((payload, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = (
                self._waiting[:MAX_EVENTS_PER_INTAKE],
                self._waiting[MAX_EVENTS_PER_INTAKE:],
            )
            try:
                answers = await self._send([payload for payload, _ in batch])
            except Exception as err:  # every caller of this batch learns why it was not taken
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
