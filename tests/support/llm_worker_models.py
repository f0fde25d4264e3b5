"""Scripted models for llm diagnoses in worker *processes* (``python worker.py``): load this module
with ``AIOPS_AGENT_MODULES=...,agents.llm,tests.support.llm_worker_models``.

``gated``: a ``FunctionModel`` controlled through files in ``$AIOPS_TEST_LLM_DIR``. Turn by turn it
calls the tools listed in ``calls.json`` (``[[tool, args], ...]``; ids ``call-0``, ``call-1``...),
then answers ``answer.json``. Every request appends ``step N`` to ``model-requests``. Before the
turn named in ``gate`` (a step number) it writes ``blocked`` and waits until ``release`` exists, so
a test can kill the worker at a known point between two tool calls, deterministically.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agents.llm.models import register_model

DIR_ENV = "AIOPS_TEST_LLM_DIR"
GATED = "gated"


def _dir() -> Path:
    return Path(os.environ[DIR_ENV])


def _read(name: str, default: Any) -> Any:
    path = _dir() / name
    return json.loads(path.read_text()) if path.exists() else default


async def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    folder = _dir()
    step = sum(1 for m in messages if isinstance(m, ModelResponse))
    with (folder / "model-requests").open("a") as log:
        log.write(f"step {step}\n")
    gate = _read("gate", None)
    if gate == step and not (folder / "release").exists():
        (folder / "blocked").write_text(str(os.getpid()))
        while True:  # until the test releases it (or kills this worker)
            if (folder / "release").exists():
                break
            await asyncio.sleep(0.05)
    calls = _read("calls.json", [])
    usage = RequestUsage(input_tokens=100, output_tokens=20)
    if step < len(calls):
        name, args = calls[step]
        return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"call-{step}")], usage=usage)
    answer = _read("answer.json", None)
    if info.output_tools:
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, answer, tool_call_id=f"call-{step}")], usage=usage
        )
    return ModelResponse(parts=[TextPart(json.dumps(answer))], usage=usage)


register_model(GATED, FunctionModel(_respond, model_name=GATED))
