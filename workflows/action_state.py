"""One action's record: what was proposed, decided, approved, executed and verified.

The same model is the ``status`` query of the action workflow and its result,
so the approver, the CLI and the audit read one shape.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from agents.models import ActionResult, AgentAction, AgentConfig, Plan, SystemEvent
from agents.policy import PolicyDecision


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
    def search_value(self) -> str:
        """The CamelCase form used in the ``AiopsActionStatus`` search attribute."""
        return "".join(part.capitalize() for part in self.value.split("_"))

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


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


class ActionInput(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    action: AgentAction
    event: SystemEvent
    config: AgentConfig
    agent_workflow_id: str
    decision: PolicyDecision
    held: bool = False
    hold_epoch: int = 0


class ApprovalRequest(BaseModel):
    """An approve / reject decision as a person sends it (signal body or update argument)."""

    model_config = ConfigDict(extra="forbid")

    approver: str = Field(min_length=1)
    comment: str = ""
    plan_digest: str | None = None


class DecisionRequest(ApprovalRequest):
    """The ``decide`` update's argument: an approval request that says which way."""

    approve: bool


class ApprovalRecord(BaseModel):
    approver: str
    approved: bool
    comment: str
    at: datetime
    channel: str
    plan_digest: str | None = None


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


class ActionRecord(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # may carry a config: never echo it

    action: AgentAction
    event: SystemEvent
    config_version: int
    status: ActionStatus = ActionStatus.PROPOSED
    decision: PolicyDecision | None = None
    plan: Plan | None = None
    plan_digest: str | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    refused: list[RefusedApproval] = Field(default_factory=list)
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
