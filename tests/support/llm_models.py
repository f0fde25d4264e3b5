"""Scripted Pydantic AI models for the llm agent's tests: no network, fully deterministic.

``scripted(calls, answer)`` makes a ``FunctionModel`` that calls the given read-only tools one per
turn (tool call ids ``call-0``, ``call-1``...) and then answers ``answer`` (a ``ModelAnswer`` as a
dict, or raw text for garbage).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agents.llm.models import register_model

SEEN_PROMPTS: list[str] = []  # every prompt the scripted models were sent, for injection checks
OFFERED_TOOLS: list[list[str]] = []  # the function tools offered with each request, by name


def _prompt_text(messages: list[ModelMessage]) -> str:
    texts = [str(getattr(m, "instructions", "") or "") for m in messages]
    texts += [str(getattr(part, "content", "")) for m in messages for part in m.parts]
    return "\n".join(texts)


def scripted(
    calls: Sequence[tuple[str, dict[str, Any]]] = (),
    answer: dict[str, Any] | str | None = None,
    tokens: int = 50,
) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        SEEN_PROMPTS.append(_prompt_text(messages))
        OFFERED_TOOLS.append(sorted(t.name for t in info.function_tools))
        step = sum(1 for m in messages if isinstance(m, ModelResponse))
        usage = RequestUsage(input_tokens=tokens, output_tokens=tokens // 5)
        if step < len(calls):
            name, args = calls[step]
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"call-{step}")], usage=usage)
        if isinstance(answer, str):
            return ModelResponse(parts=[TextPart(answer)], usage=usage)
        body = answer or {"diagnosis": {"summary": "nothing found", "evidence": [], "confidence": 0.1}}
        if info.output_tools:
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, body, tool_call_id=f"call-{step}")],
                usage=usage,
            )
        return ModelResponse(parts=[TextPart(json.dumps(body))], usage=usage)

    return FunctionModel(respond, model_name="scripted")


def register(name: str, model: FunctionModel) -> dict[str, Any]:
    """Register ``model`` and return the endpoint settings that select it."""
    register_model(name, model)
    return {"provider": "registered", "model": name}


RESTART_ANSWER = {
    "diagnosis": {
        "summary": "checkout is out of memory: the log shows OOM kills",
        "evidence": [{"observation": "OOM killer in the service log", "tool_call_id": "call-0"}],
        "confidence": 0.8,
    },
    "proposal": {
        "catalog_entry": "restart-web",
        "target": "service/checkout",
        "parameters": {"reason": "oom"},
        "risk_level": "low",
        "why": "a restart frees the leaked memory",
    },
}
