"""The inputs, outputs and error types of every activity, shared by workflows and workers.

Workflows call activities by method reference (``AgentActivities.decide_events``),
so an activity's name is its method's name and is written nowhere else; the
models they exchange live here, with the names of the errors they fail with.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from aiops.contracts.config import AgentConfig, NotifyChannel, NotifyStep
from aiops.contracts.errors import (
    InvalidAgentConfigError,
    NonRetryableActionError,
    SecretUnavailableError,
    UnknownAgentTypeError,
)
from aiops.contracts.health import (
    AgentHealth,
    AgentObservation,
    HealthStatus,
    HealthThresholds,
    HealthTransition,
    WorkerResources,
)
from aiops.contracts.models import ActionResult, AgentAction, EventType, Plan, RiskLevel, SystemEvent


class _Contract(BaseModel):
    # Many of these carry an agent config: a decoding error must never echo it (secrets).
    model_config = ConfigDict(hide_input_in_errors=True)


# ----- error types ---------------------------------------------------------------

# Agent errors retrying cannot fix leave an activity as ApplicationErrors named after their class.
NON_RETRYABLE_AGENT_ERROR_CLASSES: tuple[type[Exception], ...] = (
    UnknownAgentTypeError,
    InvalidAgentConfigError,
    NonRetryableActionError,
    SecretUnavailableError,
)
NON_RETRYABLE_AGENT_ERRORS = [cls.__name__ for cls in NON_RETRYABLE_AGENT_ERROR_CLASSES]
NO_CONFIG_STORE = "NoConfigStore"  # the worker runs without a database (--no-database)
UNKNOWN_CONFIG_VERSION = "UnknownConfigVersion"  # no such stored version, or not this agent's
CONFIG_NOT_STORABLE = "ConfigRefused"  # PostgreSQL refuses the value (say a NUL character)


class AgentInitialized(_Contract):
    agent_class: str
    subscribed_event_types: list[EventType]
    has_detector: bool = False  # the type fills _detect_specific: the agent gets a detector schedule
    audit_log: bool = True  # this worker has an audit log (a database) to write rows to
    has_plan: bool = True  # the type fills _plan_specific (False: its actions skip the plan step)


class DetectorSchedule(_Contract):
    """Bring the agent's detector schedule in line with its config (``active=False``: remove it)."""

    config: AgentConfig
    agent_workflow_id: str
    task_queue: str
    active: bool = True


class DetectorInput(_Contract):
    """What the schedule starts ``DetectorWorkflow`` with: the agent's config (secret references
    only) and where to deliver what it finds."""

    config: AgentConfig
    agent_workflow_id: str


class DetectionReport(_Contract):
    found: int
    delivered_ids: list[str] = Field(default_factory=list)


class DecisionAudit(_Contract):
    """What a decision needs to write its batch's audit rows itself, in the same activity.

    The rows are built by ``aiops.contracts.audit_rows`` exactly as the workflow would build them
    (same keys), so a row written here and again by the workflow lands once.
    """

    run_id: str
    attempts: dict[str, int] = Field(default_factory=dict)  # failed attempts so far, by event id
    filtered: list[SystemEvent] = Field(default_factory=list)  # taken off the queue unsubscribed


class DecideEventsInput(_Contract):
    config: AgentConfig
    events: list[SystemEvent]
    audit: DecisionAudit | None = None  # None: the workflow writes the rows (by activity)
    # Answer only the events that came to something (see DecideEventsResult.compact). Older
    # workflow code leaves it False; an older worker ignores it and answers every event.
    compact: bool = False


class EventDecision(_Contract):
    event_id: str
    action: AgentAction | None = None
    error: str | None = None
    retryable: bool = True


# An event whose decision fails this often (transiently, or by sinking its batch) is
# recorded as a decision error and dropped: one poison event must not stall the agent.
MAX_DECIDE_ATTEMPTS = 3


def attempts_after(previous: int, decision: EventDecision) -> int:
    """An event's failed decision attempts once ``decision`` is settled: counted up while a
    transient error will be retried, 0 once the event is done with (decided or given up on)."""
    if decision.error is not None and decision.retryable and previous + 1 < MAX_DECIDE_ATTEMPTS:
        return previous + 1
    return 0


class DecideEventsResult(_Contract):
    decisions: list[EventDecision] = Field(default_factory=list)
    # True: ``decisions`` holds only the events with an action or an error; every other event of
    # the batch was decided to need nothing. A storm's history (the local activity's marker) then
    # carries a few bytes per quiet event instead of a hundred. See ``every_decision``.
    compact: bool = False
    # The local decision ran on a worker without the agent's type: decide on the type's queue.
    unserved: bool = False
    audit_log: bool = True  # this worker has an audit log (a database)
    audited: bool = False  # the batch's audit rows are written (see ``DecisionAudit``)


def every_decision(events: list[SystemEvent], result: DecideEventsResult) -> list[EventDecision]:
    """One decision per event of the batch, in order, whichever form the worker answered in."""
    if not result.compact:
        return result.decisions
    said = {d.event_id: d for d in result.decisions}
    return [said.get(e.id) or EventDecision.model_construct(event_id=e.id) for e in events]


class ActionCall(_Contract):
    """An action, the config it was decided under, and (for execute) the approved plan."""

    config: AgentConfig
    action: AgentAction
    plan: Plan | None = None


class PlannedHere(_Contract):
    """What a local plan did. ``planned`` False: not done here (this worker lacks the agent's
    type, or the hook failed, in ``problem``), so the action plans the usual way: by activity on
    the type's queue, with its retries."""

    planned: bool = False
    plan: Plan | None = None
    problem: str = ""


class ExecutionAttempt(_Contract):
    attempt: int
    started_at: datetime
    worker: str = ""
    error: str | None = None


class AttemptLog(_Contract):
    """Carried from attempt to attempt in heartbeat details, returned at the end."""

    attempts: list[ExecutionAttempt] = Field(default_factory=list)


class ExecutionOutcome(_Contract):
    result: ActionResult
    attempts: list[ExecutionAttempt] = Field(default_factory=list)


class VerifyCall(_Contract):
    config: AgentConfig
    action: AgentAction
    result: ActionResult


class EscalationNotice(_Contract):
    action_id: str
    agent_id: str
    target: str
    message: str


class ApprovalNotice(_Contract):
    """What one channel is told at one step of an action's approval wait.

    ``key`` (``<action id>:<step>:<channel index>``) is the same on every attempt: webhooks get
    it as ``Idempotency-Key`` so a receiver can drop a retried delivery it already has. The
    channel carries secret references only; the worker resolves them.
    """

    key: str
    step: NotifyStep
    channel_index: int
    channel: NotifyChannel
    action_id: str
    agent_id: str
    workflow_id: str
    risk: RiskLevel
    summary: str
    description: str
    targets: list[str] = Field(default_factory=list)
    plan_summary: str = ""
    plan_digest: str | None = None
    approvals: int = 0
    required_approvals: int = 0
    allowed_roles: list[str] = Field(default_factory=list)
    deadline: datetime | None = None
    escalation_target: str = ""
    approve_command: str = ""
    cli_command: str = ""
    outcome: str = ""  # expired or resolved: what ended the wait
    console_link: str = ""  # the action in the approver's console; empty: no console_url configured


class NoticeDelivery(_Contract):
    """A delivered notice: the receiver's status code and the attempt that got it through."""

    status_code: int
    attempt: int


# ----- audit log and configuration store -------------------------------------


class AuditStep(StrEnum):
    EVENT_RECEIVED = "event_received"
    DECISION = "decision"
    APPROVAL = "approval"
    APPROVAL_REFUSED = "approval_refused"
    ESCALATION = "escalation"
    EXECUTION_ATTEMPT = "execution_attempt"
    EXECUTION_RESULT = "execution_result"
    VERIFICATION = "verification"
    ROLLBACK = "rollback"
    ACTION_FINISHED = "action_finished"
    CONFIG_CHANGED = "config_changed"
    CONFIG_REFUSED = "config_refused"
    AGENT_LIFECYCLE = "agent_lifecycle"
    NOTIFICATION = "notification"  # an approval notice delivered to a channel (or given up)
    LLM_DIAGNOSIS = "llm_diagnosis"  # an llm agent's diagnosis: outcome, usage, tool calls (agents/llm)
    COMMAND_REFUSED = "command_refused"  # a hold, release or abort its agent did not confirm


class AuditRecord(_Contract):
    """One step worth an audit row. ``key`` is unique per step: a retried write lands once."""

    agent_id: str
    action_id: str | None = None
    step: AuditStep
    key: str
    actor: str = ""
    occurred_at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditBatch(_Contract):
    records: list[AuditRecord]


class ConfigProposal(_Contract):
    """A config someone wants to apply, and who and why (stored with the version)."""

    config: AgentConfig
    author: str
    comment: str = ""
    request_id: str = ""  # the same request stored twice (a retried activity) is one version


class StartAgentCall(_Contract):
    """The fast path of an agent's start: register ``proposal`` (when given) and initialize.

    With ``started_sequence``, the agent's ``started`` audit row is written here when this start
    does it all (registers and initializes) and the worker has the audit log, with the config
    version the store gave (``lifecycle_record``: the run id from this activity's info, this
    sequence number and ``started_by``, the key the workflow's outbox would give it). Then no
    ``record_audit`` activity runs at the start, whose state the SDK core would keep for as long
    as the idle agent is cached. Two fields, not the row: the core keeps a local activity's
    arguments for the run's life too, with or without an audit log."""

    config: AgentConfig
    proposal: ConfigProposal | None = None
    started_sequence: int | None = Field(default=None, ge=0)
    started_by: str = ""


class StoredConfig(_Contract):
    agent_id: str
    version: int
    config: AgentConfig
    author: str
    comment: str
    created_at: datetime


class AgentStarted(_Contract):
    """What the fast path did. ``registered`` False / ``initialized`` None: not done here (no such
    agent type on this worker, or an error, in ``problem``), so the workflow does it the usual
    way, by activity with its own retries.

    A registered config comes back as ``stored_version`` when the store kept it unchanged but
    for its version number (the usual case), else whole in ``stored``. With the number alone
    the agent goes on with its own config object (``adopt_stored``); adopting the decoded copy
    cost 7.8 KB per idle agent with a config store (docs/scale.md, "What an idle agent keeps")."""

    registered: bool = False
    stored: StoredConfig | None = None
    stored_version: int | None = Field(default=None, ge=0)
    audited: bool = False  # the call's ``started`` row is written
    initialized: AgentInitialized | None = None
    problem: str = ""


class LoadConfigCall(_Contract):
    agent_id: str
    version: int


class ReloadCall(_Contract):
    old: AgentConfig
    new: AgentConfig


# ----- health monitor --------------------------------------------------------


class ObserveAgentsCall(_Contract):
    agent_ids: list[str]
    status_timeout_seconds: float = 10.0
    run_checks: bool = True  # False: only the status; the checks run on the agent type's queue


class CheckAgentsCall(_Contract):
    """Run the health-check hooks of these agents (all of one type, on that type's queue)."""

    agent_ids: list[str]
    timeout_seconds: float = 10.0


class CheckResult(_Contract):
    checks: dict[str, bool] = Field(default_factory=dict)
    error: str | None = None


class Observations(_Contract):
    agents: list[AgentObservation]
    worker: WorkerResources


class PendingApprovals(_Contract):
    """The approval inbox per agent type: how many wait, and the oldest wait in seconds."""

    count_by_type: dict[str, int] = Field(default_factory=dict)
    oldest_seconds_by_type: dict[str, float] = Field(default_factory=dict)


class FleetGroup(_Contract):
    """Agents the monitor judged alike from visibility alone (their summary, their queues): one
    verdict for all, their ids by agent type, so a fleet of thousands stays small in history."""

    status: HealthStatus
    reasons: list[str] = Field(default_factory=list)
    agents_by_type: dict[str, list[str]] = Field(default_factory=dict)

    def verdicts(self) -> list[AgentHealth]:
        return [
            AgentHealth(agent_id=a, agent_type=t, status=self.status, reasons=self.reasons)
            for t, ids in sorted(self.agents_by_type.items())
            for a in ids
        ]


class TriageCall(_Contract):
    """Read the fleet on a task queue from visibility and sort it: judged by summary, or looked at."""

    task_queue: str
    failed_within_seconds: float = 3600.0
    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    skip_agent_id: str | None = None  # the alerting agent: its own trouble shows in its status
    worker_silence_seconds: float = 120.0
    observe_all: bool = False  # a full sweep: every agent is looked at closely


class UnreportedEndsCall(_Contract):
    """Find the actions on a task queue that closed without reporting their end, and tell their
    agents (activities/action_ends.py)."""

    task_queue: str
    closed_since: datetime
    limit: int = Field(default=5000, ge=1, le=20_000)  # actions told per pass, at most


class UnreportedEnds(_Contract):
    """What ``report_unreported_ends`` did: agents told, agents gone, and some of the actions."""

    MAX_IDS: ClassVar[int] = 20

    told: int = 0
    unreachable: int = 0
    action_ids: list[str] = Field(default_factory=list)  # the first MAX_IDS told


class LookAt(_Contract):
    agent_id: str
    agent_type: str = ""
    reason: str


class FleetTriage(_Contract):
    groups: list[FleetGroup] = Field(default_factory=list)
    look: list[LookAt] = Field(default_factory=list)  # to query and check, as before the summary
    worker: WorkerResources
    listed: int = 0
    # Types in the groups that the worker which triaged has: with a real health-check hook or not.
    hooked_types: list[str] = Field(default_factory=list)
    plain_types: list[str] = Field(default_factory=list)
    # Healthy agents counted, not listed, by type: ok summary, a plain type, served queues.
    counted: dict[str, int] = Field(default_factory=dict)


class HealthSnapshot(_Contract):
    monitor_run: str
    taken_at: datetime
    agents: list[AgentHealth]
    observations: list[AgentObservation] = Field(default_factory=list)
    approvals: PendingApprovals = Field(default_factory=PendingApprovals)
    # Agents judged from visibility alone (since health-fleet-v1): a row only when a status changes.
    groups: list[FleetGroup] = Field(default_factory=list)


class HealthAlert(_Contract):
    transition: HealthTransition
    alert_agent_id: str | None = None
    monitor_run: str
