"""Composed payloads are measured before the command that carries them: a proposal too large to
become an action is refused with its reason, and the agent keeps answering and deciding."""

from __future__ import annotations

from temporalio.client import Client

from aiops.client import AiopsClient
from aiops.contracts.action import ActionInput, ActionStatus
from aiops.contracts.activities import EventDecision
from aiops.contracts.agent import agent_workflow_id
from aiops.contracts.budgets import (
    ACTION_INPUT_BUDGET,
    ACTION_PROPOSAL_BUDGET,
    DECISION_RESULT_BUDGET,
    TEMPORAL_PAYLOAD_LIMIT,
    bound_decisions,
    json_size,
    measure,
)
from aiops.contracts.models import ActionType, AgentAction, RiskLevel
from aiops.contracts.policy import Outcome, PolicyDecision
from tests.helpers import agent_config, event, eventually, team
from workflows.action_launch import check_action_input


def _action(size: int = 0) -> AgentAction:
    return AgentAction(
        id="a-1",
        agent_id="agent-1",
        type=ActionType.RUN_COMMAND,
        description="tail a log",
        target_resources=["service/web"],
        risk_level=RiskLevel.LOW,
        parameters={"path": "x" * size} if size else {},
    )


def _decision(event_id: str, size: int | None) -> EventDecision:
    return EventDecision(event_id=event_id, action=None if size is None else _action(size))


def test_budgets_leave_room_under_temporals_limit() -> None:
    assert ACTION_PROPOSAL_BUDGET + 32_000 + 64 * 1024 < ACTION_INPUT_BUDGET < TEMPORAL_PAYLOAD_LIMIT // 2
    assert DECISION_RESULT_BUDGET <= TEMPORAL_PAYLOAD_LIMIT // 2


def test_measure_is_the_json_the_converter_sends() -> None:
    action = _action(1000)
    assert json_size(action) == len(action.model_dump_json().encode())
    assert measure("x", {"a": "é"}, 10).size == len('{"a":"é"}'.encode())
    small, big = measure("it", "x" * 10, 100), measure("the thing", "x" * 2_000_000, 1024)
    assert small.fits and not big.fits
    assert big.reason.startswith("the thing is 1.91 MiB, over its budget of 1.0 KiB")


def test_bound_decisions_table() -> None:
    cases: list[tuple[list[int | None], list[tuple[bool, bool | None]]]] = [
        # sizes of proposals (None: no action) -> (kept, retryable if turned into an error)
        ([None, 10, None], [(True, None), (True, None), (True, None)]),
        ([ACTION_PROPOSAL_BUDGET - 2000], [(True, None)]),
        ([ACTION_PROPOSAL_BUDGET + 1], [(False, False)]),
        ([3_000_000, 10], [(False, False), (True, None)]),
        # five proposals of ~250 KB: four fit the batch's budget, the fifth waits for a later batch
        ([250_000] * 5, [(True, None)] * 4 + [(False, True)]),
    ]
    for sizes, expected in cases:
        decisions = [_decision(f"e{i}", size) for i, size in enumerate(sizes)]
        bounded = bound_decisions(decisions)
        assert [d.event_id for d in bounded] == [d.event_id for d in decisions]
        got = [(d.error is None, None if d.error is None else d.retryable) for d in bounded]
        assert got == expected, sizes
    refused = bound_decisions([_decision("e", 3_000_000)])[0]
    assert refused.action is None and refused.error is not None
    assert "over its budget of 256.0 KiB" in refused.error and "parameters" in refused.error


def test_action_input_is_checked_before_its_start() -> None:
    config = agent_config("recorder")
    decision = PolicyDecision(outcome=Outcome.REQUIRE_APPROVAL, reason="test")

    def input_of(size: int) -> ActionInput:
        return ActionInput(
            action=_action(size), event=event(), config=config, agent_workflow_id="w", decision=decision
        )

    assert check_action_input(input_of(1000)) is None
    reason = check_action_input(input_of(600_000))
    assert reason is not None
    assert "the action's start input is" in reason and "over its budget of 512.0 KiB" in reason
    assert "action.parameters" in reason
    # its summary and details count too
    assert check_action_input(input_of(1000), extra=ACTION_INPUT_BUDGET) is not None


async def test_a_3mb_proposal_is_refused_and_the_agent_decides_on(
    aiops: AiopsClient, client: Client, worker: object
) -> None:
    config = agent_config("oversized", approval=team())
    await aiops.agents.start(config)
    huge = event("alert", size=3 * 1024 * 1024, risk="low")
    await aiops.events.send(config.id, huge)
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.counters.decision_errors == 1, within=60
    )
    problem = next(p for p in status.recent_errors if p.event_id == huge.id)
    assert "refused the proposed action" in problem.message
    assert "parameters" in problem.message and "over its budget" in problem.message
    assert status.counters.actions_proposed == 0 and status.pending_actions == []

    # still answering and deciding: the next event becomes an action waiting for approval
    ordinary = event("alert", risk="high")
    await aiops.events.send(config.id, ordinary)
    action_id = aiops.approvals.action_id(config.id, ordinary.id)
    record = await eventually(
        lambda: aiops.approvals.action(action_id), lambda r: r.status == ActionStatus.PENDING_APPROVAL
    )
    assert record.status == ActionStatus.PENDING_APPROVAL

    # and its workflow task never failed on the payload
    handle = client.get_workflow_handle(agent_workflow_id(config.id))
    history = [e async for e in handle.fetch_history_events()]
    failed = [e for e in history if e.HasField("workflow_task_failed_event_attributes")]
    assert failed == []
