"""An action's lifecycle: which status may follow which, as one table.

``ActionWorkflow`` checks every status change against ``TRANSITIONS`` (in its status setter), so
the statuses the CLI, the approval inbox and the agent read can only move along these edges. A
status is final when nothing can follow it (``FINAL``); ``ActionStatus.is_final`` in the contract
says the same, and the unit test keeps the two in line.

The path: proposed, then planned (the dry run, when the type has a plan hook), then either
executed at once or held for approval; executing, then verifying (the agent's verify hook, when
it has one), then verified, succeeded (no verify hook), rolled back or failed. Denied, rejected
(also: aborted by the agent stopping) and expired end it before anything ran.

An illegal transition is a programming error, not something a person or an agent can cause: it
raises ``IllegalTransition``, which fails the workflow task loudly (Temporal retries the task, the
run keeps its state) instead of publishing a status the table does not know.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiops.contracts.action import ActionStatus
from aiops.contracts.errors import AiopsError

S = ActionStatus

INITIAL = S.PROPOSED

TRANSITIONS: Mapping[ActionStatus, frozenset[ActionStatus]] = {
    # Held (the agent paused) and then aborted before anything ran: rejected.
    S.PROPOSED: frozenset({S.PLANNING, S.PENDING_APPROVAL, S.EXECUTING, S.DENIED, S.REJECTED}),
    S.PLANNING: frozenset({S.PENDING_APPROVAL, S.EXECUTING, S.FAILED, S.REJECTED}),
    # Pending again: escalated, with a new deadline.
    S.PENDING_APPROVAL: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.REJECTED, S.EXPIRED}),
    S.APPROVED: frozenset({S.EXECUTING, S.REJECTED}),
    S.EXECUTING: frozenset({S.VERIFYING, S.FAILED}),
    # Succeeded: executed, and the agent has no verify hook. Failed: rollback failed or missing.
    S.VERIFYING: frozenset({S.VERIFIED, S.SUCCEEDED, S.ROLLED_BACK, S.FAILED}),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.DENIED: frozenset(),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.VERIFIED: frozenset(),
    S.ROLLED_BACK: frozenset(),
}

FINAL: frozenset[ActionStatus] = frozenset(s for s, following in TRANSITIONS.items() if not following)


class IllegalTransition(AiopsError):
    """A status change the lifecycle does not allow: a bug in the action workflow."""


def check_transition(old: ActionStatus | None, new: ActionStatus) -> None:
    """Raise ``IllegalTransition`` unless ``new`` may follow ``old`` (None: the first status)."""
    if old is None:
        if new != INITIAL:
            raise IllegalTransition(f"an action starts as {INITIAL.value}, not {new.value}")
        return
    allowed = TRANSITIONS[old]
    if new not in allowed:
        then = ", ".join(sorted(s.value for s in allowed)) or "nothing (it is final)"
        raise IllegalTransition(f"an action that is {old.value} cannot become {new.value}; allowed: {then}")
