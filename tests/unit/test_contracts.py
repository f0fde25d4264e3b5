"""The workflows' public contracts: ids and their reverse, visibility queries, message bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from temporalio.common import RawValue

from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import ApprovalRequest, HoldRequest, pending_approvals_query
from aiops.contracts.agent import AgentCommand, AgentState, StopRequest, agents_query
from aiops.contracts.search_attributes import quoted


@pytest.mark.parametrize("agent_id", ["a", "db-1", "x.y_z", "A" * 64])
def test_agent_ids_round_trip(agent_id: str) -> None:
    assert agent_contract.agent_id_of(agent_contract.agent_workflow_id(agent_id)) == agent_id


@pytest.mark.parametrize("workflow_id", ["action-a:e", "agent-", "other", ""])
def test_other_workflow_ids_are_not_agents(workflow_id: str) -> None:
    assert agent_contract.agent_id_of(workflow_id) is None


@pytest.mark.parametrize(
    ("agent_id", "event_id"),
    [("a1", "e1"), ("db", "evt:with:colons"), ("db", "spaces and / slashes"), ("db", "x" * 300)],
)
def test_action_ids_name_their_agent(agent_id: str, event_id: str) -> None:
    action_id = action_contract.action_workflow_id(agent_id, event_id)
    assert action_contract.agent_id_of(action_id) == agent_id
    assert len(action_id) < 200


def test_unsafe_event_ids_stay_unique() -> None:
    ids = {action_contract.action_workflow_id("a", e) for e in ["a/b", "a b", "a_b", "a?b"]}
    assert len(ids) == 4


@pytest.mark.parametrize("not_an_action", ["agent-a", "action-", "action-a", "action-:e"])
def test_other_ids_are_not_actions(not_an_action: str) -> None:
    assert action_contract.agent_id_of(not_an_action) is None


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("back\\slash", "'back\\\\slash'"),
    ],
)
def test_visibility_literals_are_escaped(value: str, literal: str) -> None:
    assert quoted(value) == literal


def test_visibility_queries_quote_every_value() -> None:
    query = agents_query("q' OR '1'='1", AgentState.PAUSED)
    assert "TaskQueue = 'q\\' OR \\'1\\'=\\'1'" in query
    assert "AiopsAgentState = 'paused'" in query and "ExecutionStatus = 'Running'" in query
    since = agents_query("q", failed_since=datetime(2026, 1, 1, tzinfo=UTC))
    assert "ExecutionStatus = 'Failed' AND CloseTime > '2026-01-01T00:00:00+00:00'" in since
    inbox = pending_approvals_query("q", "db-1")
    assert inbox.startswith("AiopsActionStatus = 'pending_approval' AND ExecutionStatus = 'Running'")
    assert "AiopsAgentId = 'db-1'" in inbox
    assert "(TaskQueue = 'q' OR TaskQueue STARTS_WITH 'q.')" in inbox  # the types' queues too


def test_every_person_message_carries_an_actor_and_room_for_a_credential() -> None:
    for model in (AgentCommand, StopRequest, HoldRequest, action_contract.AbortRequest):
        message = model(actor="alice", credential="token")
        assert (message.actor, message.credential) == ("alice", "token")
    approval = ApprovalRequest(approver="alice", credential="token")
    assert approval.credential == "token"
    assert AgentCommand.model_validate({"by": "ops"}).actor == "ops"  # the older field name


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (ApprovalRequest, {"approver": "x" * 1_900_000}),
        (ApprovalRequest, {"approver": "alice", "comment": "x" * 1_900_000}),
        (ApprovalRequest, {"approver": "alice", "credential": "x" * 1_900_000}),
        (ApprovalRequest, {"approver": ""}),
        (ApprovalRequest, {"aprover": "alice"}),
        (StopRequest, {"reason": "x" * 1_900_000}),
        (AgentCommand, {"actor": "x" * 10_000}),
    ],
)
def test_person_messages_are_bounded(model: type, payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(payload)


def test_every_message_name_is_a_handler_of_its_workflow() -> None:
    from temporalio import workflow

    from workflows.action.workflow import ActionWorkflow
    from workflows.agent.workflow import AgentWorkflow

    for module, cls in ((agent_contract, AgentWorkflow), (action_contract, ActionWorkflow)):
        defn = workflow._Definition.must_from_class(cls)
        handlers = {*defn.signals, *defn.updates, *defn.queries}
        names = {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and k not in (
            "WORKFLOW_TYPE", "DEFAULT_TASK_QUEUE", "WORKFLOW_ID_PREFIX",
        ) and not v[:1].isupper()}  # fmt: skip
        assert names <= handlers, names - handlers
        assert defn.name == module.WORKFLOW_TYPE


def test_the_action_messages_are_declared_once_and_handled_as_declared() -> None:
    """``ActionMessages`` (the contract) declares every message ``ActionWorkflow`` takes: the same
    names and descriptions on the workflow's overrides, and no handler it does not declare."""
    from temporalio import workflow

    from aiops.contracts.action import ActionMessages
    from workflows.action.workflow import ActionWorkflow

    def declared(member: object) -> tuple[str | None, str | None]:
        for key in ("__temporal_signal_definition", "__temporal_query_definition"):
            if hasattr(member, key):
                found = getattr(member, key)
                return found.name, found.description
        found = member._defn  # type: ignore[attr-defined]  # an update's descriptor
        return found.name, found.description

    stubs = {k: declared(v) for k, v in vars(ActionMessages).items() if not k.startswith("_")}
    assert {name for name, _ in stubs.values()} == {
        action_contract.APPROVE, action_contract.REJECT, action_contract.DECIDE, action_contract.HOLD,
        action_contract.RELEASE, action_contract.ABORT, action_contract.STATUS,
    }  # fmt: skip
    assert all(description for _, description in stubs.values())
    overrides = {k: declared(vars(ActionWorkflow)[k]) for k in stubs}
    assert overrides == stubs
    defn = workflow._Definition.must_from_class(ActionWorkflow)
    handled = {*defn.signals, *defn.updates, *defn.queries}
    assert handled == {name for name, _ in stubs.values()}
    assert defn.signals[action_contract.APPROVE].arg_types == [RawValue]  # decoded by the workflow


@pytest.mark.parametrize(
    "module_name",
    [
        "aiops.contracts.activities",
        "aiops.contracts.agent",
        "aiops.contracts.action",
        "aiops.contracts.models",
    ],
)
def test_every_contract_model_is_complete_once_imported(module_name: str) -> None:
    """A model naming a type defined further down stays incomplete until first validated; the
    workflows' converter then met it half-built (an agent's fast start failed to decode)."""
    import importlib
    import inspect

    from pydantic import BaseModel

    module = importlib.import_module(module_name)
    incomplete = [
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module_name
        and not obj.__pydantic_complete__
    ]
    assert incomplete == []


def test_a_compact_intake_answer_expands_to_one_answer_per_event_in_order() -> None:
    from aiops.contracts.agent import EventAnswer, EventOutcome, IntakeAnswer

    sent = [{"id": "a"}, {"nonsense": 1}, {"id": "b"}, {"id": "a"}]
    compact = IntakeAnswer(
        answers=[
            EventAnswer(event_id=None, outcome=EventOutcome.REJECTED, reason="id: field required", index=1),
            EventAnswer(event_id="a", outcome=EventOutcome.DUPLICATE, index=3),
        ],
        queue_length=2,
        compact=True,
    )
    expanded = compact.expand(sent)
    assert [(a.event_id, a.outcome) for a in expanded] == [
        ("a", EventOutcome.ACCEPTED),
        (None, EventOutcome.REJECTED),
        ("b", EventOutcome.ACCEPTED),
        ("a", EventOutcome.DUPLICATE),
    ]
    assert expanded[1].reason == "id: field required"
    full = IntakeAnswer(answers=expanded, queue_length=2)  # an older worker's answer, as it is
    assert full.expand(sent) == expanded


def test_a_compact_decision_result_means_nothing_for_the_events_it_leaves_out() -> None:
    from aiops.contracts.activities import DecideEventsResult, EventDecision, every_decision
    from tests.helpers import event

    batch = [event(id="q1"), event(id="e2"), event(id="q3")]
    failed = EventDecision(event_id="e2", error="boom")
    compact = DecideEventsResult(decisions=[failed], compact=True)
    decisions = every_decision(batch, compact)
    assert [d.event_id for d in decisions] == ["q1", "e2", "q3"]
    assert decisions[1] is failed
    assert all(d.action is None and d.error is None and d.retryable for d in (decisions[0], decisions[2]))
    full = DecideEventsResult(decisions=decisions)  # recorded before compact results: read as it is
    assert every_decision(batch, full) == decisions
