"""The inputs and outputs of every activity, shared by workflows and workers.

Workflows import only this module (never the implementations), so a workflow
file pulls no I/O library into the sandbox.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.models import ActionResult, AgentAction, AgentConfig, EventType, Plan, SystemEvent

INITIALIZE_AGENT = "initialize_agent"
DECIDE_EVENTS = "decide_events"
STOP_AGENT = "stop_agent"
PLAN_ACTION = "plan_action"
EXECUTE_ACTION = "execute_action"
VERIFY_ACTION = "verify_action"
ROLLBACK_ACTION = "rollback_action"
NOTIFY_ESCALATION = "notify_escalation"

NON_RETRYABLE_AGENT_ERRORS = [
    "UnknownAgentTypeError",
    "InvalidAgentConfigError",
    "NonRetryableActionError",
]


class AgentInitialized(BaseModel):
    agent_class: str
    subscribed_event_types: list[EventType]


class DecideEventsInput(BaseModel):
    config: AgentConfig
    events: list[SystemEvent]


class EventDecision(BaseModel):
    event_id: str
    action: AgentAction | None = None
    error: str | None = None
    retryable: bool = True


class DecideEventsResult(BaseModel):
    decisions: list[EventDecision] = Field(default_factory=list)


class ActionCall(BaseModel):
    """An action, the config it was decided under, and (for execute) the approved plan."""

    config: AgentConfig
    action: AgentAction
    plan: Plan | None = None


class VerifyCall(BaseModel):
    config: AgentConfig
    action: AgentAction
    result: ActionResult


class EscalationNotice(BaseModel):
    action_id: str
    agent_id: str
    target: str
    message: str
