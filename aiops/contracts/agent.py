"""The public contract of ``AgentWorkflow``: everything a caller needs, nothing it must not touch.

Clients, activities, the CLI, the health monitor and the tests import this
module (or call the workflow's methods by reference); nothing outside
``workflows/`` imports the workflow's state or intake modules. It holds:

- the workflow id and its reverse (``agent_workflow_id`` / ``agent_id_of``);
- the start input (``AgentWorkflowInput``, whose ``carried`` part is the state
  continue-as-new hands to the next run);
- every message's input and result model, and the names a raw caller (the
  ``temporal`` CLI, the Web UI, another workflow) sends them by;
- the visibility queries that find agents;
- the error types the workflow fails or refuses with;
- ``AgentMessages``: every message, declared once; senders call its methods by reference.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from temporalio import workflow

from aiops.contracts import search_attributes as sa
from aiops.contracts.action import ActionOutcome
from aiops.contracts.config import AgentConfig, AgentVerb
from aiops.contracts.incidents import Incident, IncidentSummary  # the carried state holds them
from aiops.contracts.models import CarriesConfig, EventType, RiskLevel, SystemEvent
from aiops.contracts.operator_message import MAX_NAME, MAX_TEXT, OperatorMessage

WORKFLOW_TYPE = "AgentWorkflow"
DETECTOR_WORKFLOW_TYPE = "DetectorWorkflow"  # one run of an agent's scheduled detector
DEFAULT_TASK_QUEUE = "aiops-agents"
WORKFLOW_ID_PREFIX = "agent-"

# ----- message names (for callers that cannot call the method by reference) ----

SUBMIT_EVENT = "submit_event"  # signal: one event as JSON (Web UI, `temporal workflow signal`)
SUBMIT_EVENTS = "submit_events"  # signal: a list of events, or {"events": [...]}
INTAKE = "intake"  # update: IntakeRequest -> IntakeAnswer, one answer per event (the client's path)
PAUSE = "pause"  # signal: AgentCommand
RESUME = "resume"  # signal: AgentCommand
STOP = "stop"  # signal: StopRequest
RESET_CIRCUIT_BREAKER = "reset_circuit_breaker"  # signal: AgentCommand
UPGRADE = "upgrade"  # signal: AgentCommand (continue as new at the next safe point)
ACTION_FINISHED = "action_finished"  # signal, from action workflows: ActionOutcome (a status change)
RECONFIGURE = "reconfigure"  # update: ReconfigureRequest -> ConfigApplied
COMMAND = "command"  # update: CommandRequest -> CommandApplied (pause/resume/stop/reset/upgrade)
HOLD_STATE = "hold_state"  # query -> HoldState: what the agent's actions confirm a hold, release or abort by
STATUS = "status"  # query -> AgentStatus
PENDING_ACTIONS = "pending_actions"  # query -> list[PendingAction]

# ----- error types ---------------------------------------------------------------

INVALID_AGENT_INPUT = "InvalidAgentInput"  # the start input is not a valid config (workflow fails)
AGENT_INITIALIZATION_FAILED = "AgentInitializationFailed"  # initialize gave up (workflow fails)
CONFIG_REFUSED = "ConfigRefused"  # a reconfigure update was refused; the message says why
COMMAND_REFUSED = "CommandRefused"  # a command was refused (and audited by the agent); the message says why
# The intake update's validator refused the whole batch (nothing entered history); details[0] is
# {"retryable": bool}: the queue is full or the run is about to continue as new (retry), or not.
INTAKE_REFUSED = "IntakeRefused"
MAX_EVENTS_PER_INTAKE = 500


# ----- routing ---------------------------------------------------------------------


def hooks_task_queue(task_queue: str, agent_type: str) -> str:
    """Where an agent type's hooks run: only workers that have the type poll this queue.

    Workflows run on ``task_queue`` (any worker can run them); every activity that calls
    agent code goes to ``<task queue>.<agent type>``, so a worker without the type never
    receives one, and several worker pools with different agent modules share one queue.
    """
    return f"{task_queue}.{agent_type}"


# ----- ids -------------------------------------------------------------------------


def agent_workflow_id(agent_id: str) -> str:
    """``agent-<id>``: derived from the agent id, so two starters always reach one workflow."""
    return f"{WORKFLOW_ID_PREFIX}{agent_id}"


def agent_id_of(workflow_id: str) -> str | None:
    """The agent id behind an agent workflow id, or None if it is not one."""
    if not workflow_id.startswith(WORKFLOW_ID_PREFIX) or len(workflow_id) == len(WORKFLOW_ID_PREFIX):
        return None
    return workflow_id[len(WORKFLOW_ID_PREFIX) :]


# ----- state a caller can read -----------------------------------------------------------


class AgentState(StrEnum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class AgentCounters(BaseModel):
    events_received: int = 0
    events_processed: int = 0
    events_deduplicated: int = 0
    events_rejected: int = 0
    # Events that arrived by signal with the queue full: kept by the agent's overflow workflow
    # and handed back through intake later (counted received when it comes back).
    events_spilled: int = 0
    events_filtered: int = 0
    decision_errors: int = 0
    actions_proposed: int = 0
    actions_duplicate: int = 0
    actions_succeeded: int = 0
    actions_failed: int = 0
    actions_rejected: int = 0
    # Proposals refused before an action was started: the composed input was over its budget
    # (aiops/contracts/budgets.py); the reason is in recent_errors and the audit trail.
    actions_refused: int = 0
    commands_refused: int = 0  # malformed, unsigned, not allowed, forged or replayed commands


class RecentProblem(BaseModel):
    at: datetime
    message: str
    event_id: str | None = None


class PendingAction(BaseModel):
    action_id: str
    event_id: str
    status: str
    risk_level: RiskLevel
    description: str
    proposed_at: datetime


# ----- messages ----------------------------------------------------------------------


class AgentCommand(OperatorMessage):
    """Pause, resume or reset the circuit breaker; ``by`` is accepted as an older name of ``actor``."""

    actor: str = Field(default="", max_length=MAX_NAME, validation_alias=AliasChoices("actor", "by"))


class EventOutcome(StrEnum):
    ACCEPTED = "accepted"  # queued for a decision
    DUPLICATE = "duplicate"  # seen within the dedup window: not decided again
    GROUPED = "grouped"  # joined an open incident, decided with it
    REJECTED = "rejected"  # not taken: the reason says why
    # Sent by the ``submit_events`` signal because the server's in-flight updates for the agent
    # were all taken (many independent senders): in the agent's history, so it will be decided,
    # checked by the sender as the intake checks it; the agent's own answer (accepted,
    # duplicate, grouped, or spilled while its queue is full) is in its counters and audit.
    QUEUED = "queued"


class EventAnswer(BaseModel):
    event_id: str | None  # None when the payload had no usable id
    outcome: EventOutcome
    reason: str = ""
    index: int | None = None  # in a compact answer: the event's position in the request


class IntakeRequest(BaseModel):
    """Events for the ``intake`` update (at most ``MAX_EVENTS_PER_INTAKE``); each is checked alone.

    ``compact``: answer only the events that were not accepted (see ``IntakeAnswer.expand``).
    Every answer is stored in the agent's history, so a storm's accepted events cost a hundred
    bytes each there for nothing the sender does not already know. Older callers leave it False
    and get every answer."""

    model_config = ConfigDict(hide_input_in_errors=True)

    events: list[Any] = Field(max_length=MAX_EVENTS_PER_INTAKE)
    compact: bool = False


class IntakeAnswer(BaseModel):
    """The ``intake`` update's answer: one ``EventAnswer`` per event, in order; or, when ``compact``,
    only those not accepted, each with its ``index`` in the request."""

    answers: list[EventAnswer]
    queue_length: int
    compact: bool = False

    def expand(self, events: list[Any]) -> list[EventAnswer]:
        """One answer per event sent (``events``: the request's), in order, whichever the form."""
        if not self.compact:
            return self.answers
        said = {a.index: a for a in self.answers}
        return [
            said.get(i) or EventAnswer(event_id=_id_of(e), outcome=EventOutcome.ACCEPTED)
            for i, e in enumerate(events)
        ]


def _id_of(event: Any) -> str | None:
    """The id an accepted event was taken under (it had one, or it would not be accepted)."""
    given = event.get("id") if isinstance(event, dict) else getattr(event, "id", None)
    return given if isinstance(given, str) else None


class StopRequest(AgentCommand):
    reason: str = Field(default="", max_length=MAX_TEXT)
    drain: bool = True


class CommandRequest(AgentCommand):
    """The ``command`` update's argument: pause, resume, stop (``reason``, ``drain``), reset the
    circuit breaker or upgrade (continue as new on today's code), answered with what happened or
    refused with why (the signals of the same names take the same checks but cannot answer)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    verb: AgentVerb
    reason: str = Field(default="", max_length=MAX_TEXT)
    drain: bool = True

    @model_validator(mode="after")
    def _not_reconfigure(self) -> CommandRequest:
        if self.verb == AgentVerb.RECONFIGURE:
            raise ValueError("a config change goes through the reconfigure update")
        return self


class CommandApplied(BaseModel):
    """The ``command`` update's answer. ``changed`` False: the agent already was as asked."""

    verb: AgentVerb
    actor: str
    authenticated: bool
    changed: bool


class HoldState(BaseModel):
    """What an action confirms with its agent before it holds, is released or aborts: whatever a
    signal claims, only the agent's own state (changed by verified commands) decides."""

    paused: bool
    hold_epoch: int
    abort_reason: str | None = None  # set when the agent stops without draining


class ReconfigureRequest(OperatorMessage):
    """Exactly one of: ``config`` (apply it as version N+1), ``rollback_to`` (store a copy of
    version K as N+1 and apply it), ``version`` (take this already stored version)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    config: AgentConfig | None = None
    rollback_to: int | None = Field(default=None, ge=1)
    version: int | None = Field(default=None, ge=1)
    author: str = Field(default="", max_length=MAX_NAME)
    comment: str = Field(default="", max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _one_of(self) -> ReconfigureRequest:
        given = [v for v in (self.config, self.rollback_to, self.version) if v is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of: a whole config, rollback_to, or a stored version")
        return self


class ConfigApplied(BaseModel):
    """The ``reconfigure`` update's answer."""

    agent_id: str
    version: int
    previous_version: int
    changed: bool


# ----- start input, carried state, status and result ------------------------------------


class AgentRunState(CarriesConfig):
    """The whole state of an agent: what ``status`` reads and what continue-as-new carries."""

    config: AgentConfig
    state: AgentState = AgentState.INITIALIZING
    subscribed_event_types: list[EventType] = Field(default_factory=list)
    queue: list[SystemEvent] = Field(default_factory=list)
    seen_event_ids: list[str] = Field(default_factory=list)
    counters: AgentCounters = Field(default_factory=AgentCounters)
    pending_actions: dict[str, PendingAction] = Field(default_factory=dict)
    recent_errors: list[RecentProblem] = Field(default_factory=list)
    recent_rejections: list[RecentProblem] = Field(default_factory=list)
    last_event_at: datetime | None = None
    started_at: datetime | None = None
    stop_request: StopRequest | None = None
    pause_requested: bool = False
    hold_epoch: int = 0
    decide_attempts: dict[str, int] = Field(default_factory=dict)
    consecutive_failures: int = 0
    circuit_open: bool = False
    auto_executions: list[datetime] = Field(default_factory=list)
    failure: str | None = None
    run_number: int = 1
    recent_action_seconds: list[float] = Field(default_factory=list)
    has_detector: bool = False  # the agent type fills _detect_specific
    has_plan: bool = True  # the agent type fills _plan_specific (False: actions skip the plan step)
    incidents: dict[str, Incident] = Field(default_factory=dict)  # open incidents by correlation key
    # Signed commands taken (token id -> expiry, epoch seconds): a token is used once.
    command_tokens: dict[str, int] = Field(default_factory=dict)
    incidents_opened: int = 0
    # The workers that ran this agent's hooks have an audit log (a database); without one no
    # audit activity is scheduled, as its rows would go nowhere.
    audit_log: bool = True
    # The run ended under a raw signal storm (workflows/agent/decisions.py): the next run decides
    # its first batch by activity too, instead of learning the storm again from a task the server
    # force-closes (whose local decisions would then run twice).
    in_storm: bool = False


class AgentWorkflowInput(CarriesConfig):
    """What starts an agent: its config, or the state a previous run carried."""

    config: AgentConfig
    carried: AgentRunState | None = None
    started_by: str = ""


class AgentStatus(CarriesConfig):
    """The ``status`` query's answer."""

    agent_id: str
    name: str
    type: str
    state: AgentState
    config_version: int
    config: AgentConfig
    counters: AgentCounters
    queue_length: int
    pending_actions: list[PendingAction]
    error_rate: float
    success_rate: float | None
    last_event_at: datetime | None
    started_at: datetime | None
    recent_errors: list[RecentProblem]
    recent_rejections: list[RecentProblem]
    failure: str | None
    run_number: int
    circuit_open: bool
    consecutive_failures: int
    recent_action_seconds: list[float] = Field(default_factory=list)
    incidents: list[IncidentSummary] = Field(default_factory=list)
    # Set when the answer was over its size budget and lists were cut: says what was left out.
    truncated: str | None = None


class AgentRunSummary(CarriesConfig):
    """What a finished agent run returns."""

    agent_id: str
    state: AgentState
    counters: AgentCounters
    unprocessed_events: list[SystemEvent] = Field(default_factory=list)
    failure: str | None = None


# ----- visibility --------------------------------------------------------------------------


def agents_query(
    task_queue: str | None = None, state: AgentState | None = None, failed_since: datetime | None = None
) -> str:
    """Running agents (on ``task_queue``, in ``state``), and with ``failed_since`` also the agents
    whose workflow failed after that instant, so a failure is judged instead of vanishing."""
    query = f"WorkflowType = {sa.quoted(WORKFLOW_TYPE)}"
    if task_queue is not None:
        query += f" AND TaskQueue = {sa.quoted(task_queue)}"
    if state is not None:
        query += f" AND {sa.AGENT_STATE.name} = {sa.quoted(AgentState(state).value)}"
    if failed_since is None:
        return query + " AND ExecutionStatus = 'Running'"
    return (
        query + " AND (ExecutionStatus = 'Running' OR "
        f"(ExecutionStatus = 'Failed' AND CloseTime > {sa.quoted(failed_since.isoformat())}))"
    )


# ----- messages, declared once -------------------------------------------------------------


class AgentMessages:
    """Every message ``AgentWorkflow`` takes, with its name and types; the workflow subclasses this
    and re-declares each handler with the same decorator. Senders that cannot import the workflow
    (activities, other workflows, clients) send by method reference: ``handle.signal(
    AgentMessages.submit_event, event)``. ``Any``: a signal people type by hand (the Web UI, the
    ``temporal`` CLI), decoded and checked by the agent, which refuses, counts and audits junk.
    Handlers that answer are ``abstractmethod``: only the workflow has something to answer with."""

    @workflow.signal(name=SUBMIT_EVENT)
    def submit_event(self, payload: Any = None) -> None:
        """One event as JSON (the Web UI, ``temporal workflow signal``, the health monitor)."""

    @workflow.signal(name=SUBMIT_EVENTS)
    def submit_events(self, payload: Any = None) -> None:
        """A list of events, or ``{"events": [...]}`` (people, and the agent's detector ticks)."""

    @workflow.update  # named INTAKE by its method name
    @abstractmethod
    def intake(self, request: IntakeRequest) -> IntakeAnswer:
        """Events with an answer for each (the client's path); refused whole when the agent is full."""

    @workflow.signal(name=PAUSE)
    async def pause(self, command: Any = None) -> None:
        """An ``AgentCommand``: stop deciding events and hold approved actions not yet started."""

    @workflow.signal(name=RESUME)
    async def resume(self, command: Any = None) -> None:
        """An ``AgentCommand``: decide events again and release held actions."""

    @workflow.signal(name=RESET_CIRCUIT_BREAKER)
    def reset_circuit_breaker(self, command: Any = None) -> None:
        """An ``AgentCommand``: a person closes the circuit breaker."""

    @workflow.signal(name=STOP)
    def stop(self, request: Any = None) -> None:
        """A ``StopRequest``: drain the queue first (default), or abort actions not yet executing."""

    @workflow.signal(name=UPGRADE)
    def upgrade(self, command: Any = None) -> None:
        """An ``AgentCommand``: continue as new at the next safe point, on today's code."""

    @workflow.update  # named COMMAND by its method name
    @abstractmethod
    async def command(self, request: CommandRequest) -> CommandApplied:
        """Any of the commands above, answered with what happened or refused (and audited) with why."""

    @workflow.update  # named RECONFIGURE by its method name (a name= here loses the result type)
    @abstractmethod
    async def reconfigure(self, payload: Any = None) -> ConfigApplied:
        """A ``ReconfigureRequest`` (a config, a rollback or a stored version), applied between batches."""

    @workflow.signal(name=ACTION_FINISHED)
    def action_finished(self, outcome: ActionOutcome) -> None:
        """An action's status change or end (sent by its ActionWorkflow; an end is confirmed first)."""

    @workflow.query(name=HOLD_STATE)
    @abstractmethod
    def hold_state(self) -> HoldState:
        """What the agent's actions confirm a hold, release or abort signal against."""

    @workflow.query(name=STATUS)
    @abstractmethod
    def status(self) -> AgentStatus:
        """The agent's state, counters, queue, pending actions and recent problems."""

    @workflow.query(name=PENDING_ACTIONS)
    @abstractmethod
    def pending_actions(self) -> list[PendingAction]:
        """The actions proposed and not yet final."""
