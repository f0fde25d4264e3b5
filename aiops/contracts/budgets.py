"""Size budgets for the payloads a workflow composes itself, checked before the command that carries them.

Temporal refuses a payload over 2 MB (``PAYLOADS_TOO_LARGE``) by failing the workflow task that
produced the command, and the task fails again on every retry: the workflow is wedged until a
person terminates it. Inputs from outside are bounded where they enter; the payloads a workflow
*builds* (an action from a proposal, the state continue-as-new carries, a query's answer) can
still combine bounded parts into something too large, so they are measured here, before the
command, and refused or shed with a reason that says what was too large.

The budgets sit well under 2 MB: the measure is the pydantic JSON of the value (what the data
converter sends), but a command carries other payloads beside it (headers, memo, search
attributes, the codec's envelope when payloads are encrypted, about +33% with base64 in the
Web UI's codec path), and the server also limits a whole workflow task's commands together.
A quarter of the limit leaves room for all of that and for a few such payloads in one task.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, TypeAdapter

from aiops.contracts.activities import EventDecision

TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024  # the server's default blob size limit (error level)

# The input of one ActionWorkflow (the action, its event, the agent's config, the policy verdict).
ACTION_INPUT_BUDGET = 512 * 1024
# The state continue-as-new carries to the next run (queue, dedup window, pending actions, ...).
# Larger than the others: a full queue alone may hold 1,000,000 bytes of events (MAX_QUEUE_BYTES),
# and continue-as-new is the only command of its task, so half a megabyte of room is enough.
CARRIED_STATE_BUDGET = 1536 * 1024
# A query's or an update's answer (status, pending_actions).
ANSWER_BUDGET = 1024 * 1024

_ANY: TypeAdapter[object] = TypeAdapter(object)


def json_size(value: object) -> int:
    """The size in bytes of ``value`` as the pydantic data converter serializes it."""
    if isinstance(value, BaseModel):
        return len(value.model_dump_json().encode())
    return len(_ANY.dump_json(value))


@dataclass(frozen=True)
class Measured:
    """A payload's size against its budget."""

    what: str
    size: int
    budget: int

    @property
    def fits(self) -> bool:
        return self.size <= self.budget

    @property
    def reason(self) -> str:
        """What was too large, said the way recent_errors and the audit show it."""
        return f"{self.what} is {kib(self.size)}, over its budget of {kib(self.budget)}"


def measure(what: str, value: object, budget: int) -> Measured:
    return Measured(what=what, size=json_size(value), budget=budget)


def kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:,.2f} MiB"


def largest_fields(value: BaseModel, top: int = 3) -> list[tuple[str, int]]:
    """The fields of ``value`` that weigh the most (name, bytes): what a refusal points at."""
    sizes = [(name, json_size(getattr(value, name))) for name in type(value).model_fields]
    return sorted(sizes, key=lambda item: -item[1])[:top]


# ----- a decision's answer --------------------------------------------------------------

# One proposed action as an agent's hook returns it: what ACTION_INPUT_BUDGET must still hold
# once the event (at most 32,000 bytes) and the config (at most 64 KiB) join it.
ACTION_PROPOSAL_BUDGET = 256 * 1024
# The proposals of one decided batch together (the activity's result, recorded in history).
DECISION_RESULT_BUDGET = 1024 * 1024


def bound_decisions(decisions: list[EventDecision]) -> list[EventDecision]:
    """The decisions of a batch with every proposal that cannot be carried turned into an error.

    A proposal over ``ACTION_PROPOSAL_BUDGET`` is refused for good (deciding the event again
    would propose the same); proposals past ``DECISION_RESULT_BUDGET`` together are given back
    as retryable errors, so their events are decided again in a later batch, where they fit.
    Runs where the answer is produced (the decision activity), before it reaches history.
    """
    bounded: list[EventDecision] = []
    total = 0
    for decision in decisions:
        if decision.action is None:
            bounded.append(decision)
            continue
        proposal = measure("the proposed action", decision.action, ACTION_PROPOSAL_BUDGET)
        if not proposal.fits:
            parts = largest_fields(decision.action, 2)
            heaviest = ", ".join(f"{name} ({size:,} bytes)" for name, size in parts)
            error = f"refused the proposed action: {proposal.reason}; the largest parts: {heaviest}"
            bounded.append(EventDecision(event_id=decision.event_id, error=error, retryable=False))
            continue
        if total + proposal.size > DECISION_RESULT_BUDGET:
            error = (
                f"the batch's proposals are over {kib(DECISION_RESULT_BUDGET)} together: "
                "this event is decided again in a later batch"
            )
            bounded.append(EventDecision(event_id=decision.event_id, error=error, retryable=True))
            continue
        total += proposal.size
        bounded.append(decision)
    return bounded
