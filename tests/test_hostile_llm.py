"""Hostile model output against the llm plugin, on real servers: tool-call arguments of 16 KB to 5 MB,
an answer of 5 MB, and a maximal valid answer. Every oversized call is refused with its reason (the
model sees it), no payload reaches Temporal over its budget, and the agent keeps answering queries
and deciding the next alert. (The other entry points: tests/test_hostile_inputs.py.)
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.contracts.limits import MAX_ACTION_INPUT_BYTES, MAX_TOOL_ARGUMENT_BYTES, json_size
from tests.helpers import agent_config, event, eventually, team, wait_pending
from tests.support.llm_models import RESTART_ANSWER, register, scripted

FIVE_MB = 5 * 1024 * 1024


CATALOG = [
    {
        "name": "restart-web",
        "action_type": "restart_service",
        "targets": ["service/*"],
        "parameters": {"reason": {"type": "string", "enum": ["oom", "hang", "config"]}},
        "risk_floor": "medium",
    }
]


def hostile_model(path_bytes: int) -> FunctionModel:
    """Answers every alert validly, after first calling ``read_file_tail`` with a huge path."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        usage = RequestUsage(input_tokens=50, output_tokens=10)
        if not any(isinstance(m, ModelResponse) for m in messages):
            path = "/" + "a" * path_bytes
            return ModelResponse(
                parts=[ToolCallPart("read_file_tail", {"path": path}, tool_call_id="call-0")], usage=usage
            )
        answer = ToolCallPart(info.output_tools[0].name, RESTART_ANSWER, tool_call_id="answer")
        return ModelResponse(parts=[answer], usage=usage)

    return FunctionModel(respond, model_name="hostile")


@pytest.mark.parametrize("path_bytes", [16_000, 100_000, 2_000_000, FIVE_MB])
async def test_a_huge_tool_argument_is_a_refused_call_and_the_agent_keeps_deciding(
    aiops: AiopsClient, worker, tmp_path: Path, path_bytes: int
) -> None:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    config = agent_config(
        "llm",
        settings={
            "endpoint": register(name, hostile_model(path_bytes)),
            "catalog": CATALOG,
            "tools": {"file_roots": [str(tmp_path)]},
        },
        runtime={"local_decisions": False, "decision_timeout_seconds": 120},
        approval=team(),
    )
    await aiops.agents.start(config)
    for _ in range(2):  # the agent answers queries and decides the next alert too
        alert = event("alert", source="service/checkout", severity="high")
        await aiops.events.send(config.id, alert)
        record = await wait_pending(aiops, aiops.approvals.action_id(config.id, alert.id))
        assert record.status == ActionStatus.PENDING_APPROVAL
        assert json_size(record.action.model_dump(mode="json")) <= MAX_ACTION_INPUT_BYTES
        [call] = record.action.parameters["diagnosis"]["tool_calls"]
        assert call["ok"] is False and "refused" in call["result"], call
        if path_bytes < MAX_TOOL_ARGUMENT_BYTES:  # at the limit: the call runs (and the path is refused)
            assert "outside the configured file roots" in call["result"], call
        else:
            assert f"over the {MAX_TOOL_ARGUMENT_BYTES}-byte limit" in call["result"], call
        assert "a" * 1000 not in json.dumps(call), "the argument is never copied into the action"
        status = await aiops.agents.status(config.id)
        assert status.state.value == "running"


def garbage_model(answer_bytes: int) -> FunctionModel:
    """Answers with ``answer_bytes`` of text that is no answer at all."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:

        return ModelResponse(
            parts=[TextPart("{" * answer_bytes)], usage=RequestUsage(input_tokens=5, output_tokens=5)
        )

    return FunctionModel(respond, model_name="garbage")


async def test_a_model_answer_of_5_mb_is_no_proposal_and_the_agent_keeps_deciding(
    aiops: AiopsClient, worker
) -> None:
    name = f"garbage-{uuid.uuid4().hex[:8]}"
    config = agent_config(
        "llm",
        settings={
            "endpoint": {**register(name, garbage_model(FIVE_MB)), "use_tools": False},
            "catalog": CATALOG,
        },
        runtime={"local_decisions": False, "decision_timeout_seconds": 120},
        approval=team(),
    )
    await aiops.agents.start(config)
    for count in (1, 2):
        await aiops.events.send(config.id, event("alert", source="service/checkout"))
        status = await eventually(
            lambda: aiops.agents.status(config.id),
            lambda s, c=count: s.counters.events_processed == c,
            within=60,
        )
        assert status.state.value == "running" and status.counters.actions_proposed == 0


MAXIMAL_ANSWER = {
    "diagnosis": {
        "summary": "s" * 2000,
        "evidence": [{"observation": "o" * 2000, "tool_call_id": "call-0"} for _ in range(20)],
        "confidence": 0.9,
    },
    "proposal": {**RESTART_ANSWER["proposal"], "why": "w" * 2000},
}


async def test_a_maximal_valid_answer_becomes_a_proposal_with_all_its_evidence(
    aiops: AiopsClient, worker
) -> None:
    """About 50 KB of answer: over a tool call's argument bound, but the answer is bounded as an
    answer, so nothing of it is refused or cut."""

    name = f"maximal-{uuid.uuid4().hex[:8]}"
    config = agent_config(
        "llm",
        settings={"endpoint": register(name, scripted(answer=MAXIMAL_ANSWER)), "catalog": CATALOG},
        runtime={"local_decisions": False, "decision_timeout_seconds": 120},
        approval=team(),
    )
    await aiops.agents.start(config)
    alert = event("alert", source="service/checkout")
    await aiops.events.send(config.id, alert)
    record = await wait_pending(aiops, aiops.approvals.action_id(config.id, alert.id))
    diagnosis = record.action.parameters["diagnosis"]
    assert len(diagnosis["evidence"]) == 20 and diagnosis["summary"] == "s" * 2000
    assert json_size(record.action.model_dump(mode="json")) <= MAX_ACTION_INPUT_BYTES
