"""``AgentMessages`` (aiops/contracts/agent.py) declares every message of ``AgentWorkflow`` once:
the workflow re-declares each with the same name and kind, and takes the hand-typed signals raw."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from aiops.contracts import agent as agent_contract
from aiops.contracts.agent import AgentMessages, AgentRunState, AgentState, StopRequest
from aiops.contracts.config import AgentConfig
from workflows.agent.state import hold_state_of
from workflows.agent.workflow import AgentWorkflow


def declared(cls: type) -> dict[str, tuple[str, str | None]]:
    """Python method name -> (kind, message name) of every handler ``cls`` itself declares."""
    found: dict[str, tuple[str, str | None]] = {}
    for attr, member in vars(cls).items():
        if (signal := getattr(member, "__temporal_signal_definition", None)) is not None:
            found[attr] = ("signal", signal.name)
        elif (query := getattr(member, "__temporal_query_definition", None)) is not None:
            found[attr] = ("query", query.name)
        elif isinstance(member, workflow.UpdateMethodMultiParam):
            found[attr] = ("update", member._defn.name)
    return found


def test_the_workflow_declares_exactly_the_messages_of_the_contract() -> None:
    stubs = declared(AgentMessages)
    assert stubs == declared(AgentWorkflow)
    defn = workflow._Definition.must_from_class(AgentWorkflow)
    assert {n for k, n in stubs.values() if k == "signal"} == set(defn.signals)
    assert {n for k, n in stubs.values() if k == "query"} == set(defn.queries)
    assert {n for k, n in stubs.values() if k == "update"} == set(defn.updates)
    constants = (
        "SUBMIT_EVENT", "SUBMIT_EVENTS", "INTAKE", "PAUSE", "RESUME", "STOP", "RESET_CIRCUIT_BREAKER",
        "UPGRADE", "ACTION_FINISHED", "RECONFIGURE", "COMMAND", "HOLD_STATE", "STATUS", "PENDING_ACTIONS",
    )  # fmt: skip
    names = {getattr(agent_contract, c) for c in constants}
    assert names == {n for _, n in stubs.values()}


def test_hand_typed_signals_arrive_undecoded_and_internal_ones_typed() -> None:
    """The SDK drops a signal it cannot decode; these the agent decodes, and refuses, itself."""
    signals = workflow._Definition.must_from_class(AgentWorkflow).signals
    for name in (
        "submit_event",
        "submit_events",
        "pause",
        "resume",
        "stop",
        "reset_circuit_breaker",
        "upgrade",
    ):
        assert signals[name].arg_types == [RawValue], name
    action_finished: Any = signals["action_finished"].arg_types
    assert [t.__name__ for t in action_finished] == ["ActionOutcome"]


def state(**kw: Any) -> AgentRunState:
    return AgentRunState(config=AgentConfig(id="a", name="a", type="example"), **kw)


def test_actions_are_held_while_paused_and_aborted_only_by_a_stop_without_draining() -> None:
    assert hold_state_of(state(state=AgentState.PAUSED, hold_epoch=3)).model_dump() == {
        "paused": True, "hold_epoch": 3, "abort_reason": None,
    }  # fmt: skip
    draining = StopRequest(reason="bye")
    assert hold_state_of(state(state=AgentState.STOPPING, stop_request=draining)).abort_reason is None
    aborting = StopRequest(drain=False)
    assert (
        hold_state_of(state(state=AgentState.RUNNING, stop_request=aborting)).abort_reason is None
    )  # not yet
    stopped = hold_state_of(state(state=AgentState.STOPPED, stop_request=aborting))
    assert stopped.abort_reason == "the agent stopped" and not stopped.paused
