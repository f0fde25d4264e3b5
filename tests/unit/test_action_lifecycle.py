"""An action's lifecycle table: every edge passes, others raise, final means nothing follows."""

from __future__ import annotations

import pytest

from aiops.contracts.action import FINAL_STATUSES, ActionInput, ActionStatus
from aiops.contracts.action_start import status_at_start
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import ActionType, AgentAction, RiskLevel, SystemEvent
from aiops.contracts.policy import Outcome, PolicyDecision
from tests.helpers import agent_config
from workflows.action_lifecycle import FINAL, INITIAL, TRANSITIONS, IllegalTransition, check_transition

S = ActionStatus
EDGES = [(old, new) for old, following in TRANSITIONS.items() for new in sorted(following)]


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ActionStatus)


@pytest.mark.parametrize(("old", "new"), EDGES, ids=[f"{o.value}->{n.value}" for o, n in EDGES])
def test_every_allowed_transition_passes(old: ActionStatus, new: ActionStatus) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.SUCCEEDED, S.VERIFYING),  # succeeded is final: verifying comes before it
        (S.VERIFIED, S.ROLLED_BACK),
        (S.REJECTED, S.APPROVED),
        (S.EXPIRED, S.PENDING_APPROVAL),
        (S.FAILED, S.EXECUTING),
        (S.PENDING_APPROVAL, S.EXECUTING),  # approved first
        (S.PROPOSED, S.APPROVED),
        (S.EXECUTING, S.SUCCEEDED),  # through verifying
        (S.EXECUTING, S.REJECTED),  # an executing action cannot be aborted
        (S.PLANNING, S.PROPOSED),
        (S.DENIED, S.DENIED),
    ],
)
def test_a_transition_not_in_the_table_raises(old: ActionStatus, new: ActionStatus) -> None:
    with pytest.raises(IllegalTransition) as raised:
        check_transition(old, new)
    assert isinstance(raised.value, AiopsError)
    assert old.value in str(raised.value) and new.value in str(raised.value)


def test_an_action_starts_proposed() -> None:
    check_transition(None, INITIAL)
    with pytest.raises(IllegalTransition, match="starts as proposed"):
        check_transition(None, S.EXECUTING)


def test_final_statuses_have_no_way_out_and_agree_with_the_contract() -> None:
    assert all(not TRANSITIONS[s] for s in FINAL)
    assert all(TRANSITIONS[s] for s in set(ActionStatus) - FINAL)
    assert FINAL == FINAL_STATUSES
    assert {s for s in ActionStatus if s.is_final} == FINAL
    assert S.SUCCEEDED in FINAL and S.VERIFYING not in FINAL


def test_every_status_is_reachable_from_the_initial_one() -> None:
    seen, frontier = {INITIAL}, [INITIAL]
    while frontier:
        for new in TRANSITIONS[frontier.pop()]:
            if new not in seen:
                seen.add(new)
                frontier.append(new)
    assert seen == set(ActionStatus)


def test_every_status_that_is_not_final_can_reach_an_end() -> None:
    for start in set(ActionStatus) - FINAL:
        seen, frontier = {start}, [start]
        while frontier:
            for new in TRANSITIONS[frontier.pop()] - seen:
                seen.add(new)
                frontier.append(new)
        assert seen & FINAL, start


def _input(outcome: str, has_plan: bool, held: bool) -> ActionInput:
    return ActionInput(
        action=AgentAction(
            id="a-1",
            agent_id="x",
            type=ActionType.RESTART_SERVICE,
            description="restart",
            risk_level=RiskLevel.LOW,
        ),
        event=SystemEvent(id="e-1", type="alert", source="web-1"),
        config=agent_config("recorder"),
        agent_workflow_id="agent-x",
        decision=PolicyDecision(outcome=Outcome(outcome), reason="r"),
        held=held,
        has_plan=has_plan,
    )


@pytest.mark.parametrize(
    ("outcome", "has_plan", "held", "shown"),
    [
        ("auto_execute", False, False, ActionStatus.EXECUTING),  # its first task goes on to execute
        ("auto_execute", True, False, ActionStatus.PROPOSED),  # it plans first
        ("auto_execute", False, True, ActionStatus.PROPOSED),  # it waits for its agent
        ("require_approval", False, False, ActionStatus.PROPOSED),
        ("deny", False, False, ActionStatus.PROPOSED),
    ],
)
def test_an_action_is_started_showing_executing_only_when_it_runs_at_once(
    outcome: str, has_plan: bool, held: bool, shown: ActionStatus
) -> None:
    """What the search attributes show from the start (the record itself starts proposed)."""
    assert status_at_start(_input(outcome, has_plan, held)) == shown
