"""The public contract of ``ActionWorkflow``: ids, input, messages, the record, queries, errors.

Clients, the CLI, activities and tests import this module; nothing outside ``workflows/`` imports
the workflow's internals. Its messages are declared once, as the handler stubs of
``ActionMessages`` (which ``ActionWorkflow`` subclasses): senders name them by reference, e.g.
``handle.signal(ActionMessages.approve, ...)``, and never by a string they could misspell.
``ActionRecord`` is both the ``status`` query's answer and the workflow's result, so the approver,
the CLI and the audit read one shape.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from aiops.contracts import search_attributes as sa
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import ActionResult, AgentAction, CarriesConfig, Plan, SystemEvent
from aiops.contracts.operator_message import MAX_NAME, MAX_TEXT, OperatorMessage
from aiops.contracts.policy import PolicyDecision

WORKFLOW_TYPE = "ActionWorkflow"
WORKFLOW_ID_PREFIX = "action-"

# ----- message names (the Web UI, the `temporal` CLI and recorded histories use them) ----

APPROVE = "approve"  # signal: ApprovalRequest (Web UI, `temporal workflow signal`)
REJECT = "reject"  # signal: ApprovalRequest
DECIDE = "decide"  # update: DecisionRequest -> ActionRecord; refusals come back at once
HOLD = "hold"  # signal, from the agent while it is paused: HoldRequest
RELEASE = "release"  # signal, from the agent when it resumes: HoldRequest
ABORT = "abort"  # signal, from the agent when it stops without draining: AbortRequest
STATUS = "status"  # query -> ActionRecord

# ----- error types ---------------------------------------------------------------

APPROVAL_REFUSED = "ApprovalRefused"  # the decide update's validator refused; the message says why

MAX_REFUSALS_KEPT = 20  # refused decisions an action keeps in its state (all are audited)

# ----- ids -------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def action_workflow_id(agent_id: str, event_id: str) -> str:
    """``action-<agent>:<event>``: agent ids never contain ``:``, so no two pairs collide.

    An event id with characters unsafe in a workflow id, or a very long one, is
    kept readable and made unique with a digest of the original.
    """
    safe = _SAFE.sub("_", event_id)
    if safe != event_id or len(safe) > 100:
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:16]
        safe = f"{safe[:60]}-{digest}"
    return f"{WORKFLOW_ID_PREFIX}{agent_id}:{safe}"


def agent_id_of(action_id: str) -> str | None:
    """The agent that proposed the action ``action_id``, or None if it is not an action id."""
    if not action_id.startswith(WORKFLOW_ID_PREFIX):
        return None
    agent_id, colon, event_part = action_id[len(WORKFLOW_ID_PREFIX) :].partition(":")
    return agent_id if colon and agent_id and event_part else None


# ----- status ------------------------------------------------------------------------


class ActionStatus(StrEnum):
    PROPOSED = "proposed"
    PLANNING = "planning"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DENIED = "denied"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    ROLLED_BACK = "rolled_back"

    @property
    def is_final(self) -> bool:
        """Nothing can follow this status: the action has ended (see workflows/action_lifecycle.py)."""
        return self in FINAL_STATUSES


# The statuses an action ends in: those with no way out in the lifecycle's transition table
# (workflows/action_lifecycle.py; its unit test keeps the two in line).
FINAL_STATUSES = frozenset(
    {
        ActionStatus.REJECTED,
        ActionStatus.EXPIRED,
        ActionStatus.DENIED,
        ActionStatus.SUCCEEDED,
        ActionStatus.FAILED,
        ActionStatus.VERIFIED,
        ActionStatus.ROLLED_BACK,
    }
)

# ----- start input -------------------------------------------------------------------


class ActionInput(CarriesConfig):
    action: AgentAction
    event: SystemEvent
    config: AgentConfig
    agent_workflow_id: str
    decision: PolicyDecision
    held: bool = False
    hold_epoch: int = 0
    # The agent's workers have an audit log (a database); without one the action schedules no
    # audit activity, as its rows would go nowhere.
    audit_log: bool = True
    # The agent type has a plan hook (a dry run); without one the plan step, which would only
    # answer "no dry run", is skipped.
    has_plan: bool = True
    # How the agent started this workflow: as its child (the server links the two), or from its
    # worker's client (``aiops/contracts/action_start.py``), with no parent link; the agent is then
    # ``agent_workflow_id``, which the starter set.
    launch: Literal["child", "client"] = "child"


# ----- messages ----------------------------------------------------------------------


class ApprovalRequest(BaseModel):
    """An approve / reject decision as a person sends it (signal body or update argument).

    ``approver`` is the actor; ``credential`` is the signed token that proves it (see
    ``approval_token.py``; ``aiops approvals token`` prints one ready to paste). Unknown
    fields are refused, so a typo (``"aprover"``) is an error, not an anonymous approval.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    approver: str = Field(min_length=1, max_length=MAX_NAME)
    comment: str = Field(default="", max_length=MAX_TEXT)
    plan_digest: str | None = Field(default=None, max_length=128)
    credential: str | None = Field(default=None, max_length=8192)


class DecisionRequest(ApprovalRequest):
    """The ``decide`` update's argument: an approval request that says which way."""

    approve: bool


class HoldRequest(OperatorMessage):
    """Hold or release: ``epoch`` is the agent's pause epoch; only a newer one changes anything."""

    epoch: int | None = None


class AbortRequest(OperatorMessage):
    reason: str = Field(default="", max_length=MAX_TEXT)


# ----- the record ----------------------------------------------------------------------


class ApprovalRecord(BaseModel):
    approver: str
    approved: bool
    comment: str
    at: datetime
    channel: str
    plan_digest: str | None = None
    # Proven by a signed token the workflow verified; False: the name alone (dev mode), which
    # every view says.
    authenticated: bool = False
    token_id: str | None = None
    issuer: str | None = None  # the trusted identity provider that vouched (None: a personal key)


class RefusedApproval(BaseModel):
    approver: str
    approved: bool
    comment: str
    at: datetime
    channel: str
    reason: str


class StatusChange(BaseModel):
    status: ActionStatus
    at: datetime
    note: str = ""


class ActionRecord(CarriesConfig):
    """The ``status`` query's answer and the workflow's result."""

    action: AgentAction
    event: SystemEvent
    config_version: int
    status: ActionStatus = ActionStatus.PROPOSED
    decision: PolicyDecision | None = None
    plan: Plan | None = None
    plan_digest: str | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    refused: list[RefusedApproval] = Field(default_factory=list)  # the latest MAX_REFUSALS_KEPT
    refused_total: int = 0  # every refused decision (each one is in the audit log)
    escalated: bool = False
    escalation_error: str | None = None
    held: bool = False
    hold_epoch: int = 0
    approval_deadline: datetime | None = None
    result: ActionResult | None = None
    verified: bool | None = None
    rollback_result: ActionResult | None = None
    error: str | None = None
    history: list[StatusChange] = Field(default_factory=list)
    approve_command: str = ""


class ActionOutcome(BaseModel):
    """What an action workflow tells its agent when its status changes or it ends."""

    action_id: str
    event_id: str
    status: ActionStatus
    success: bool | None = None
    message: str = ""
    duration_seconds: float | None = None  # proposal to final status, on the final report


def plan_digest(plan: Plan | None) -> str:
    """A stable digest of the plan an approver saw (sha256 of its canonical JSON)."""
    body = plan.model_dump_json() if plan is not None else "null"
    return hashlib.sha256(body.encode()).hexdigest()


# ----- visibility --------------------------------------------------------------------------


def pending_approvals_query(task_queue: str | None = None, agent_id: str | None = None) -> str:
    """The approval inbox: running actions waiting for a decision (on a queue, of an agent).

    An action runs on its agent type's queue, ``<task queue>.<agent type>`` (an action started
    before that, on the task queue itself), so the queue's inbox is both."""
    pending = ActionStatus.PENDING_APPROVAL
    query = f"{sa.ACTION_STATUS.name} = {sa.quoted(pending.value)} AND ExecutionStatus = 'Running'"
    if task_queue is not None:
        on_queue, on_types = sa.quoted(task_queue), sa.quoted(f"{task_queue}.")
        query += f" AND (TaskQueue = {on_queue} OR TaskQueue STARTS_WITH {on_types})"
    if agent_id is not None:
        query += f" AND {sa.AGENT_ID.name} = {sa.quoted(agent_id)}"
    return query


def unreported_ends_query(task_queue: str, closed_since: datetime) -> str:
    """Actions on a queue (or its types' queues) that closed since ``closed_since`` other than by
    completing: terminated, timed out, canceled or failed. Such an action told its agent nothing
    (activities/action_ends.py)."""
    on_queue, on_types = sa.quoted(task_queue), sa.quoted(f"{task_queue}.")
    since = closed_since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return (
        f"WorkflowType = {sa.quoted(WORKFLOW_TYPE)}"
        " AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'"
        " AND ExecutionStatus != 'ContinuedAsNew'"
        f" AND CloseTime >= {sa.quoted(since)}"
        f" AND (TaskQueue = {on_queue} OR TaskQueue STARTS_WITH {on_types})"
    )


# ----- the messages, declared once ------------------------------------------------------------

# What a person may send, and what they must not: in the docs, the handlers' descriptions (the Web
# UI lists them under each name in its signal and update menus) and the static details, so nobody
# has to guess what a menu entry does.
PEOPLE_MESSAGES = {
    DECIDE: 'For people: approve or reject, {"approver", "credential", "approve": true|false, "comment"}; '
    "the credential is a token signed with your key (`aiops approvals token`). A refusal comes back "
    "at once, with the reason.",
    APPROVE: 'For people: approve, {"approver", "credential", "comment"}: paste what `aiops approvals '
    "token ACTION` prints. A refusal is recorded and shown in Current Details; the decide update "
    "shows it at once.",
    REJECT: 'For people: reject, {"approver", "credential", "comment"} (`aiops approvals token --reject`).',
    STATUS: "Read-only: the whole action record (plan, approvals, refusals, result).",
}
AGENT_MESSAGES = {
    HOLD: "Internal: the agent sends it when paused, so execution waits. Never send it by hand.",
    RELEASE: "Internal: the agent sends it when resumed. Never send it by hand.",
    ABORT: "Internal: the agent sends it when it stops without draining. Never send it by hand.",
}

# The payload of a signal people type by hand. Its senders send any JSON value (an
# ``ApprovalRequest``'s fields); the handler gets it undecoded, as a ``RawValue`` (the SDK reads the
# annotation at run time and then skips decoding), so that what cannot be decoded is refused and
# audited by the workflow instead of dropped by the SDK with a traceback.
if TYPE_CHECKING:
    HandTyped = Any
else:
    HandTyped = RawValue

# What a hand-typed signal sent with no input at all arrives as (``temporal workflow signal``
# without ``--input``): refused like an empty request, never dropped.
NO_INPUT = RawValue(Payload())


class ActionMessages:
    """Every message ``ActionWorkflow`` takes, as handler stubs: the one declaration of their names,
    payload types and descriptions (``ActionWorkflow`` subclasses this and re-declares each handler
    with the same decorator, as the SDK requires of an override).

    The approve and reject signals are typed by hand (Web UI, ``temporal`` CLI), so they take the
    payload raw: the workflow decodes it itself, and refuses and audits what it cannot read instead
    of the SDK dropping the signal with a traceback. The agent's messages are typed.
    """

    @workflow.signal(name=APPROVE, description=PEOPLE_MESSAGES[APPROVE])
    def approve(self, payload: HandTyped = NO_INPUT) -> None:
        """A person approves: an ``ApprovalRequest`` as JSON. A refusal is recorded and audited."""

    @workflow.signal(name=REJECT, description=PEOPLE_MESSAGES[REJECT])
    def reject(self, payload: HandTyped = NO_INPUT) -> None:
        """A person rejects: an ``ApprovalRequest`` as JSON. A refusal is recorded and audited."""

    @workflow.update(name=DECIDE, description=PEOPLE_MESSAGES[DECIDE])
    def decide(self, request: DecisionRequest) -> ActionRecord:
        """A person approves or rejects and learns the outcome at once (``aiops approvals``): a
        refusal fails the update with the reason (error type ``APPROVAL_REFUSED``), after the
        workflow recorded and audited it."""
        raise NotImplementedError("a stub: ActionWorkflow handles it")

    @workflow.signal(name=HOLD, description=AGENT_MESSAGES[HOLD])
    def hold(self, request: HoldRequest | None = None) -> None:
        """From the agent, when it is paused: do not start executing until released (only a
        prompt: the workflow confirms it with the agent's own state)."""

    @workflow.signal(name=RELEASE, description=AGENT_MESSAGES[RELEASE])
    def release(self, request: HoldRequest | None = None) -> None:
        """From the agent, when it resumes: executing may start (confirmed with the agent)."""

    @workflow.signal(name=ABORT, description=AGENT_MESSAGES[ABORT])
    def abort(self, request: AbortRequest | None = None) -> None:
        """From the agent, when it stops without draining: end the action unless it is already
        executing (confirmed with the agent)."""

    @workflow.query(name=STATUS, description=PEOPLE_MESSAGES[STATUS])
    def status(self) -> ActionRecord:
        """The whole action record (plan, approvals, refusals, result)."""
        raise NotImplementedError("a stub: ActionWorkflow answers it")
