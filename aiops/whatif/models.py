"""What a what-if answers (``aiops what-if``, ``client.config.what_if``): pydantic, so the CLI's
``-o json`` and a script read the same thing the table shows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Verdict(StrEnum):
    """What became (recorded) or would become (candidate) of one proposed action."""

    RUN = "run"  # ran on its own
    APPROVAL = "approval"  # waited for people (roles and quorum beside it)
    DENY = "deny"
    RATE_LIMITED = "rate_limited"  # would run on its own, but the auto-execution limit was spent
    CIRCUIT_OPEN = "circuit_open"  # would run on its own, but the circuit breaker was open
    FILTERED = "filtered"  # the candidate's agent does not subscribe to the event's type
    GROUPED = "grouped"  # the candidate groups the event into an incident: decided with it, not alone
    NOT_PROPOSED = "not_proposed"  # the decision hook proposes nothing (then, or re-run with the candidate)


class DecisionView(BaseModel):
    verdict: Verdict
    reason: str = ""
    required_approvals: int = 0
    allowed_roles: list[str] = Field(default_factory=list)


class ChangedDecision(BaseModel):
    """One recorded proposal the candidate would treat differently."""

    action_id: str
    event_id: str
    at: datetime
    risk: str
    description: str
    recorded: DecisionView
    candidate: DecisionView
    # How the recorded action ended (succeeded, failed, rejected, expired...), once known.
    recorded_status: str | None = None


class VerdictCount(BaseModel):
    verdict: Verdict
    recorded: int = 0
    candidate: int = 0


class EventChanges(BaseModel):
    """The events of the window, and how the candidate's filter and grouping would take them."""

    events: int = 0  # decided, filtered or grouped (decision-error rows are counted apart)
    decision_errors: int = 0
    filtered_recorded: int = 0
    filtered_candidate: int = 0
    now_filtered: int = 0  # decided (or grouped) then; the candidate's agent would not take them
    no_longer_filtered: int = 0  # filtered then; the candidate's agent would decide them (proposal unknown)
    grouped_recorded: int = 0
    grouped_candidate: int = 0
    now_grouped: int = 0
    no_longer_grouped: int = 0  # grouped then; decided alone now (proposal unknown)
    incidents_candidate: int = 0  # incidents the candidate's grouping would open (approximate)


class WhatIfReport(BaseModel):
    agent_id: str
    agent_type: str
    candidate_version: int
    since: datetime | None
    until: datetime | None
    source: str = "audit_log"
    rows_read: int = 0
    # Every row of the window links to the one before it (the hash chain): no row went missing.
    chain_linked: bool = True
    chain_problem: str | None = None
    # "recorded": the recorded proposals were judged again; "rerun": the agent type declares pure
    # decisions and its hook was re-run with the candidate on the events its histories hold.
    proposals: str = "recorded"
    rerun_events: int = 0  # events the hook was re-run on
    proposals_note: str = ""
    actions: int = 0
    summary: list[VerdictCount] = Field(default_factory=list)
    events: EventChanges = Field(default_factory=EventChanges)
    changed: int = 0  # proposals whose verdict, roles or quorum would differ
    changed_decisions: list[ChangedDecision] = Field(default_factory=list)  # the first `listed_limit`
    listed_limit: int = 0
    recorded_config_versions: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
