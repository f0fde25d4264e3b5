"""Size budgets where values are produced: events in the client, and everything an llm diagnosis makes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agents.llm import bounds
from agents.llm.proposal import (
    DiagnosisAnswer,
    DiagnosisResult,
    Evidence,
    ProposalRefused,
    ProposedAction,
    ToolCallRecord,
    to_action,
)
from agents.llm.settings import LlmSettings
from aiops.client.errors import EventTooLargeError
from aiops.client.events import batches, checked_size
from aiops.contracts.limits import (
    MAX_ACTION_INPUT_BYTES,
    MAX_EVENT_BYTES,
    MAX_INTAKE_BYTES,
    MAX_MODEL_ANSWER_BYTES,
    MAX_RECORDED_ARGUMENT_BYTES,
    MAX_RECORDED_RESULT_BYTES,
    MAX_RECORDED_TOOL_CALLS,
    MAX_TOOL_ARGUMENT_BYTES,
    TEMPORAL_PAYLOAD_LIMIT,
    UNMEASURABLE,
    json_size,
)
from aiops.contracts.models import SystemEvent

# ----- the measure ---------------------------------------------------------------------------------


def test_json_size_counts_utf8_bytes_and_refuses_to_measure_what_is_too_deep() -> None:
    assert json_size({"a": "é"}) == len('{"a":"é"}'.encode())
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert json_size(deep) == UNMEASURABLE


def test_the_budgets_fit_temporals_payload_limit_with_margin() -> None:
    assert MAX_INTAKE_BYTES * 2 <= TEMPORAL_PAYLOAD_LIMIT
    assert MAX_ACTION_INPUT_BYTES * 4 <= TEMPORAL_PAYLOAD_LIMIT
    recorded = MAX_RECORDED_TOOL_CALLS * (MAX_RECORDED_ARGUMENT_BYTES + MAX_RECORDED_RESULT_BYTES + 600)
    assert recorded * 2 <= TEMPORAL_PAYLOAD_LIMIT, "a diagnosis' result keeps its tool calls with margin"


# ----- events in the client --------------------------------------------------------------------------


def event_of(size: int, event_id: str = "e") -> dict[str, Any]:
    base: dict[str, Any] = {"id": event_id, "type": "alert", "source": "x", "data": {"b": ""}}
    from aiops.client.events import _LONGEST_NOW

    empty = len(SystemEvent.model_validate({"timestamp": _LONGEST_NOW, **base}).model_dump_json())
    base["data"] = {"b": "a" * (size - empty)}
    return base


@pytest.mark.parametrize("size", [MAX_EVENT_BYTES - 1, MAX_EVENT_BYTES])
def test_an_event_at_the_limit_is_measured_as_the_intake_measures_it(size: int) -> None:
    assert checked_size(event_of(size)) == size


@pytest.mark.parametrize("size", [MAX_EVENT_BYTES + 1, 2 * 1024 * 1024, 5 * 1024 * 1024])
def test_an_event_over_the_limit_is_refused_naming_it_its_size_and_the_limit(size: int) -> None:
    with pytest.raises(EventTooLargeError) as caught:
        checked_size(event_of(size, "big-one"))
    message = str(caught.value)
    assert "'big-one'" in message and f"{size} bytes" in message and f"{MAX_EVENT_BYTES}-byte" in message


def test_a_payload_that_is_not_an_event_is_measured_as_json_and_left_to_the_agent() -> None:
    assert checked_size(["not", "an", "event"]) == json_size(["not", "an", "event"])
    with pytest.raises(EventTooLargeError, match="event #3 is"):
        checked_size("x" * (MAX_EVENT_BYTES + 10), index=2)


def test_batches_keep_order_and_stay_under_the_count_and_byte_limits() -> None:
    payloads = [f"p{i}" for i in range(100)]
    sizes = [MAX_EVENT_BYTES] * 100
    out = batches(payloads, sizes, batch_size=500)
    assert [p for b in out for p in b] == payloads
    assert all(sum(sizes[: len(b)]) + len(b) <= MAX_INTAKE_BYTES for b in out)
    assert len(out) == 4  # 31 events of 32 KB a batch
    assert [len(b) for b in batches(payloads, [10] * 100, batch_size=30)] == [30, 30, 30, 10]
    assert batches([], [], 10) == []


# ----- the llm plugin ---------------------------------------------------------------------------------


def test_a_model_answer_with_huge_arguments_leaves_the_activity_small() -> None:
    huge = ToolCallPart("read_file_tail", {"path": "/" + "a" * 2_000_000}, tool_call_id="c")
    small = ToolCallPart("agent_status", {}, tool_call_id="d")
    text = TextPart("x" * (MAX_MODEL_ANSWER_BYTES * 2))
    bounded = bounds.bound_response(ModelResponse(parts=[huge, small, text]))
    call, kept, cut = bounded.parts
    assert isinstance(call, ToolCallPart) and isinstance(cut, TextPart)
    assert json_size(call.args) < 300 and "2000012 bytes" in str(call.args)
    assert kept is small
    assert len(cut.content.encode()) == MAX_MODEL_ANSWER_BYTES
    assert bounds.oversized(call.args) is not None and "16384-byte" in str(bounds.oversized(call.args))
    plain = ModelResponse(parts=[small])
    assert bounds.bound_response(plain) is plain


def test_the_answer_itself_is_bounded_as_an_answer_not_as_a_tool_argument() -> None:
    answer = ToolCallPart("final_result", {"diagnosis": {"summary": "s" * 100_000}}, tool_call_id="a")
    kept = bounds.bound_response(ModelResponse(parts=[answer]), frozenset({"final_result"}))
    assert kept.parts[0] is answer
    too_big = ToolCallPart("final_result", {"summary": "s" * (MAX_MODEL_ANSWER_BYTES + 1)}, tool_call_id="b")
    cut = bounds.bound_response(ModelResponse(parts=[too_big]), frozenset({"final_result"})).parts[0]
    assert isinstance(cut, ToolCallPart) and bounds.OVERSIZED in str(cut.args)


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ({"path": "a" * (MAX_TOOL_ARGUMENT_BYTES - 20)}, False),
        ({"path": "a" * MAX_TOOL_ARGUMENT_BYTES}, True),
        (json.dumps({"path": "a" * MAX_TOOL_ARGUMENT_BYTES}), True),
        ({bounds.OVERSIZED: "refused: earlier"}, True),
        (None, False),
    ],
)
def test_oversized_arguments_are_named(args: Any, refused: bool) -> None:
    assert (bounds.oversized(args) is not None) is refused


def test_recorded_arguments_keep_small_ones_and_a_prefix_of_large_ones() -> None:
    assert bounds.recorded_arguments({"a": 1}) == {"a": 1}
    recorded = bounds.recorded_arguments({"path": "p" * 10_000})
    assert json_size(recorded) < 600 and "over the 2048-byte limit" in recorded["_truncated"]


def test_the_conversation_is_fitted_by_cutting_the_oldest_tool_results_first() -> None:
    def turn(n: int, size: int) -> list[Any]:
        call = ModelResponse(parts=[ToolCallPart("agent_status", {}, tool_call_id=f"c{n}")])
        result = ModelRequest(parts=[ToolReturnPart("agent_status", "r" * size, tool_call_id=f"c{n}")])
        return [call, result]

    messages: list[Any] = [ModelRequest(parts=[UserPromptPart("the alert")])]
    for n in range(5):
        messages += turn(n, 300_000)
    fitted = bounds.fit_history(messages, limit=1_000_000)
    sizes = [len(str(p.content)) for m in fitted for p in m.parts if isinstance(p, ToolReturnPart)]
    assert sum(sizes) <= 1_000_000
    assert sizes[-1] == 300_000 and sizes[-2] == 300_000, "the newest results are kept whole"
    assert sizes[0] < 1000, "the oldest is cut first"
    first = next(p for p in fitted[2].parts if isinstance(p, ToolReturnPart))
    assert "[cut: 300000 bytes, to keep the conversation under 1000000 bytes]" in str(first.content)
    small = messages[:3]
    assert bounds.fit_history(small) is small, "within the limit: the very same messages (replays match)"


def maximal(text: str) -> tuple[DiagnosisResult, LlmSettings, SystemEvent]:
    """A proposal with every field at its bound, and the catalog that allows it."""
    parameters = {f"p{i}": {"type": "string", "max_length": 2000} for i in range(20)}
    settings = LlmSettings.model_validate(
        {
            "catalog": [
                {
                    "name": "n" * 64,
                    "action_type": "restart_service",
                    "description": text[:500],
                    "targets": ["*"],
                    "parameters": parameters,
                    "risk_floor": "low",
                }
            ]
        }
    )
    proposal = ProposedAction(
        catalog_entry="n" * 64,
        target="t" * 200,
        parameters={f"p{i}": text[:2000] for i in range(20)},
        why=text[:2000],
    )
    diagnosis = DiagnosisAnswer(
        summary=text[:2000],
        evidence=[Evidence(observation=text[:2000], tool_call_id="i" * 200) for _ in range(20)],
        confidence=1.0,
    )
    calls = [
        ToolCallRecord(
            tool_call_id="i" * 200,
            tool="t" * 200,
            arguments=bounds.recorded_arguments({"a": text * 10}),
            result=text[:MAX_RECORDED_RESULT_BYTES],
        )
        for _ in range(MAX_RECORDED_TOOL_CALLS)
    ]
    result = DiagnosisResult(
        agent_id="a" * 64,
        event_id="e" * 128,
        model="m" * 300,
        diagnosis=diagnosis,
        proposal=proposal,
        tool_calls=calls,
        unsupported_evidence=["i" * 200] * 20,
    )
    event = SystemEvent(id="e" * 128, type="alert", source="s")
    return result, settings, event


def test_a_maximal_proposal_fits_the_action_budget_with_everything_kept() -> None:
    result, settings, event = maximal("x" * 20_000)
    action = to_action(result, settings, event)
    assert json_size(action.model_dump(mode="json")) <= MAX_ACTION_INPUT_BYTES
    assert len(action.parameters["diagnosis"]["tool_calls"]) == 20
    assert len(action.parameters["diagnosis"]["evidence"]) == 20


def test_a_maximal_proposal_of_escaped_characters_fits_by_leaving_details_out() -> None:
    """Control characters cost six bytes each in JSON: the tool calls go first, with a note."""
    result, settings, event = maximal("\x01" * 20_000)
    try:
        action = to_action(result, settings, event)
    except ProposalRefused as err:  # refusing is allowed; exceeding the budget is not
        assert "over the" in str(err)
        return
    assert json_size(action.model_dump(mode="json")) <= MAX_ACTION_INPUT_BYTES
    assert "left out" in json.dumps(action.parameters["diagnosis"])
