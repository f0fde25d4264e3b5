"""Replaying one agent's recorded audit rows against a candidate config, row by row.

Pure (no I/O; rows come in, in chain order): ``Simulation.feed`` takes one row, ``report``
says what the candidate would have done. It reuses the real logic, never a copy of it:

- the policy (``aiops.contracts.policy.decide``) for every recorded proposal;
- the rate limit and the circuit breaker through the agent's own state functions
  (``workflows.agent.state.policy_context`` and ``record_outcome``) on a simulated
  ``AgentRunState`` carrying the candidate config;
- incident grouping through ``workflows.agent.incidents.correlation_of``;
- filtering through the event types the candidate's agent subscribes to.

What a row does not say is not guessed: an action the candidate would run but people
rejected then has no known result, so it does not count towards the breaker; an event the
candidate would decide but that was filtered then has no recorded proposal. Memory is bounded
by the actions in flight and the listed changes, never by the window's length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aiops.contracts.action import ActionOutcome, ActionStatus
from aiops.contracts.agent import AgentRunState, PendingAction
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import ActionType, AgentAction, RiskLevel, SystemEvent
from aiops.contracts.policy import Outcome, PolicyContext, PolicyDecision, decide
from aiops.whatif.models import (
    ChangedDecision,
    DecisionView,
    EventChanges,
    Verdict,
    VerdictCount,
    WhatIfReport,
)
from aiops.whatif.rerun import Proposals
from workflows.agent.incidents import correlation_of
from workflows.agent.state import policy_context, record_outcome

EXECUTED = {ActionStatus.SUCCEEDED, ActionStatus.VERIFIED, ActionStatus.FAILED, ActionStatus.ROLLED_BACK}
BREAKER_REASON = "the circuit breaker is open"
LIMIT_REASON = "automatic execution limit reached"
MAX_OPEN_ACTIONS = 200_000  # actions decided and not yet finished that the simulation remembers


def recorded_view(detail: dict[str, Any]) -> DecisionView:
    """The recorded decision row as a verdict (breaker and limit read from its reason)."""
    outcome, reason = str(detail.get("outcome", "")), str(detail.get("reason", ""))
    if outcome == Outcome.AUTO_EXECUTE:
        verdict = Verdict.RUN
    elif outcome == Outcome.DENY:
        verdict = Verdict.DENY
    elif reason.startswith(BREAKER_REASON):
        verdict = Verdict.CIRCUIT_OPEN
    elif reason.startswith(LIMIT_REASON):
        verdict = Verdict.RATE_LIMITED
    else:
        verdict = Verdict.APPROVAL
    roles = detail.get("allowed_roles")
    return DecisionView(
        verdict=verdict,
        reason=reason,
        required_approvals=int(detail.get("required_approvals") or 0),
        allowed_roles=[str(r) for r in roles] if isinstance(roles, list) else [],
    )


def _view(verdict: Verdict, decision: PolicyDecision) -> DecisionView:
    return DecisionView(
        verdict=verdict,
        reason=decision.reason,
        required_approvals=decision.required_approvals,
        allowed_roles=list(decision.allowed_roles),
    )


def _differs(a: DecisionView, b: DecisionView) -> bool:
    if a.verdict != b.verdict:
        return True
    if a.verdict != Verdict.APPROVAL:
        return False
    return a.required_approvals != b.required_approvals or sorted(a.allowed_roles) != sorted(b.allowed_roles)


@dataclass(frozen=True, slots=True)
class _Proposal:
    """One proposal being judged (recorded then, or made by the re-run hook): its action, the
    event it answers, its risk and description, the decision recorded then, and when."""

    action_id: str
    event_id: str
    risk: RiskLevel
    description: str
    recorded: DecisionView
    at: datetime


class Simulation:
    """The candidate's agent, fed the recorded rows of one agent in chain order."""

    def __init__(
        self,
        candidate: AgentConfig,
        subscribed: set[str] | None,
        listed_limit: int = 200,
        rerun: Proposals | None = None,
    ) -> None:
        self.candidate = candidate
        self.rerun = rerun  # the candidate hook's proposals by event id, when it was re-run
        self.subscribed = subscribed  # None: not known here (the agent type is not installed)
        self.listed_limit = listed_limit
        self.sim = AgentRunState(config=candidate)
        self.counts = {v: VerdictCount(verdict=v) for v in Verdict}
        self.events = EventChanges()
        self.changed = 0
        self.listed: dict[str, ChangedDecision] = {}
        self.open: dict[str, Verdict] = {}  # action id -> the candidate's verdict, until it ends
        self.incidents: dict[str, datetime] = {}  # the candidate's open incidents: key -> decide at
        self.versions: set[int] = set()
        self.actions = 0
        self.notes: set[str] = set()
        self.skipped = 0  # rows not in the form the framework writes

    # ----- rows -----------------------------------------------------------------------------

    def feed(self, step: str, action_id: str | None, detail: dict[str, Any], at: datetime) -> None:
        """Take one row; a row that is not what the framework writes (by hand, say) is counted
        and skipped, never the end of the what-if."""
        try:
            self._feed(step, action_id, detail, at)
        except (ValueError, TypeError, AttributeError):  # pydantic's ValidationError is a ValueError
            self.skipped += 1

    def _feed(self, step: str, action_id: str | None, detail: dict[str, Any], at: datetime) -> None:
        if step == "event_received" and action_id is None and "event_id" in detail:
            self._event(detail, at)
        elif step == "decision" and action_id is not None:
            self._decision(action_id, detail, at)
        elif step == "action_finished" and action_id is not None:
            self._finished(action_id, detail, at)
        elif step == "agent_lifecycle" and detail.get("state") == "circuit_breaker_reset":
            self.sim.circuit_open = False  # a person reset it then: they would have now
            self.sim.consecutive_failures = 0

    def _would_filter(self, event_type: str) -> bool:
        return self.subscribed is not None and event_type not in self.subscribed

    def _would_group(self, detail: dict[str, Any], event_type: str, at: datetime) -> bool:
        """Whether the candidate's grouping takes this event into an incident (and counts the
        incidents it opens: a key's incident takes the events of one window after its first)."""
        runtime = self.candidate.runtime
        window = runtime.incident_window_seconds
        if window is None:
            return False
        if runtime.incident_group_by:
            self.notes.add(
                "grouping by labels (runtime.incident_group_by) is not re-evaluated: the audit log "
                "does not hold the events' labels"
            )
            return False
        correlation = detail.get("correlation_id")
        probe = SystemEvent(
            id=str(detail.get("event_id") or "-")[:128],
            type=event_type,
            source="what-if",
            correlation_id=str(correlation) if isinstance(correlation, str) else None,
            timestamp=at,
        )
        key = correlation_of(probe, runtime)
        if key is None:
            return False
        opened = self.incidents.get(key)
        if opened is None or at >= opened + timedelta(seconds=window):
            self.incidents[key] = at
            self.events.incidents_candidate += 1
            if len(self.incidents) > 10_000:  # keep only the recent ones
                horizon = at - timedelta(seconds=window)
                self.incidents = {k: t for k, t in self.incidents.items() if t >= horizon}
        return True

    def _event(self, detail: dict[str, Any], at: datetime) -> None:
        if detail.get("decision_error") is not None and "filtered" not in detail:
            self.events.decision_errors += 1
            return
        ev = self.events
        ev.events += 1
        event_type = str(detail.get("type", ""))
        version = detail.get("config_version")
        if isinstance(version, int):
            self.versions.add(version)
        was_filtered = "filtered" in detail
        was_grouped = "incident" in detail
        ev.filtered_recorded += was_filtered
        ev.grouped_recorded += was_grouped
        if self._would_filter(event_type):
            ev.filtered_candidate += 1
            ev.now_filtered += not was_filtered
            return
        ev.no_longer_filtered += was_filtered
        self._new_proposal(detail, at, was_filtered or was_grouped)
        if str(detail.get("event_id", "")).startswith("incident:"):
            return  # an incident's own event: its grouping was counted with its alerts
        grouped = self._would_group(detail, event_type, at)
        ev.grouped_candidate += grouped
        ev.now_grouped += grouped and not was_grouped
        ev.no_longer_grouped += was_grouped and not grouped

    def _new_proposal(self, detail: dict[str, Any], at: datetime, not_decided_then: bool) -> None:
        """An event the re-run hook proposes for where nothing was proposed then: judged too."""
        event_id = str(detail.get("event_id", ""))
        if self.rerun is None or detail.get("proposed_action") is not None or not_decided_then:
            return
        proposed = self.rerun.get(event_id)
        if proposed is None:
            return
        action_type, risk = proposed
        recorded = DecisionView(verdict=Verdict.NOT_PROPOSED, reason="nothing was proposed then")
        proposal = _Proposal(f"new:{event_id}", event_id, risk, f"{action_type} (re-run)", recorded, at)
        self._count(proposal, detail)

    def _decision(self, action_id: str, detail: dict[str, Any], at: datetime) -> None:
        recorded = recorded_view(detail)
        try:
            risk = RiskLevel(str(detail.get("risk_level")))
        except ValueError:
            self.notes.add("a decision row without a known risk level was skipped")
            return
        event_id = str(detail.get("event_id", ""))
        proposal = _Proposal(action_id, event_id, risk, str(detail.get("description", "")), recorded, at)
        if self.rerun is not None and event_id in self.rerun:
            proposed = self.rerun[event_id]
            if proposed is None:
                self.actions += 1
                nothing = DecisionView(
                    verdict=Verdict.NOT_PROPOSED, reason="the candidate's decision hook proposes nothing"
                )
                self._tally(proposal, nothing)
                return
            proposal = replace(proposal, risk=proposed[1])
        self._count(proposal, detail)

    def _count(self, proposal: _Proposal, detail: dict[str, Any]) -> None:
        self.actions += 1
        event_type = str(detail.get("event_type") or detail.get("type") or "")
        correlated = isinstance(detail.get("correlation_id"), str)
        self._tally(proposal, self._judge(proposal, event_type, correlated))

    def _tally(self, proposal: _Proposal, candidate: DecisionView) -> None:
        recorded = proposal.recorded
        self.counts[recorded.verdict].recorded += 1
        self.counts[candidate.verdict].candidate += 1
        if len(self.open) < MAX_OPEN_ACTIONS:
            self.open[proposal.action_id] = candidate.verdict
        if _differs(recorded, candidate):
            self.changed += 1
            if len(self.listed) < self.listed_limit:
                self.listed[proposal.action_id] = ChangedDecision(
                    action_id=proposal.action_id,
                    event_id=proposal.event_id,
                    at=proposal.at,
                    risk=proposal.risk.value,
                    description=proposal.description[:200],
                    recorded=recorded,
                    candidate=candidate,
                )

    def _judge(self, proposal: _Proposal, event_type: str, correlated: bool) -> DecisionView:
        action_id, risk, description = proposal.action_id, proposal.risk, proposal.description
        event_id, at = proposal.event_id, proposal.at
        if self._would_filter(event_type):
            return DecisionView(
                verdict=Verdict.FILTERED, reason=f"the candidate's agent does not subscribe to {event_type}"
            )
        if not event_id.startswith("incident:") and self.candidate.runtime.incident_window_seconds:
            # The candidate groups it: its incident is decided once, by a proposal never recorded.
            runtime = self.candidate.runtime
            if not runtime.incident_group_by and correlated:
                return DecisionView(
                    verdict=Verdict.GROUPED,
                    reason="the candidate groups this event into an incident, decided once with it",
                )
        action = AgentAction(
            id=action_id,
            agent_id=self.candidate.id,
            type=ActionType.CUSTOM,  # the policy reads the risk, never the type
            description=description or "-",
            risk_level=risk,
        )
        context = policy_context(self.sim, at)
        decision = decide(self.candidate, action, context)
        if decision.outcome == Outcome.AUTO_EXECUTE:
            self.sim.auto_executions.append(at)  # counted as the agent counts it
            return _view(Verdict.RUN, decision)
        if decision.outcome == Outcome.DENY:
            return _view(Verdict.DENY, decision)
        if decide(self.candidate, action, PolicyContext()).outcome == Outcome.AUTO_EXECUTE:
            limited = Verdict.CIRCUIT_OPEN if context.circuit_open else Verdict.RATE_LIMITED
            return _view(limited, decision)
        return _view(Verdict.APPROVAL, decision)

    def _finished(self, action_id: str, detail: dict[str, Any], at: datetime) -> None:
        verdict = self.open.pop(action_id, None)
        try:
            status = ActionStatus(str(detail.get("status")))
        except ValueError:
            return
        listed = self.listed.get(action_id)
        if listed is not None:
            listed.recorded_status = status.value
        if verdict is None or status not in EXECUTED:
            return  # never ran then: what it would have done now is not known
        if verdict == Verdict.APPROVAL:
            self.notes.add(
                "an action the candidate sends for approval is assumed to get the answer people gave then"
            )
        elif verdict != Verdict.RUN:
            return  # the candidate would not have run it: its result does not count
        # It ran then and would run now: its result moves the candidate's breaker, as the agent's.
        self.sim.pending_actions[action_id] = PendingAction(
            action_id=action_id,
            event_id="-",
            status=status.value,
            risk_level=RiskLevel.LOW,
            description="",
            proposed_at=at,
        )
        record_outcome(self.sim, ActionOutcome(action_id=action_id, event_id="-", status=status))

    # ----- the answer -------------------------------------------------------------------------

    def report(self, report: WhatIfReport) -> WhatIfReport:
        report.actions = self.actions
        report.summary = [c for c in self.counts.values() if c.recorded or c.candidate]
        report.events = self.events
        report.changed = self.changed
        report.changed_decisions = list(self.listed.values())
        report.listed_limit = self.listed_limit
        report.recorded_config_versions = sorted(self.versions)
        skipped = [f"{self.skipped} rows not in the form the framework writes were skipped"]
        report.notes = [*report.notes, *sorted(self.notes), *(skipped if self.skipped else [])]
        return report
