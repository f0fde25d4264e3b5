"""A scripted diagnosis model for the demo (``scripts/demo.sh --llm``): no network, no weights.

Importing this module registers it as ``endpoint: {"provider": "registered", "model": "scripted"}``
in the worker process (``AIOPS_AGENT_MODULES=agents.llm,agents.llm.scripted``). It is Pydantic AI's
``FunctionModel`` playing a careful SRE: when the alert names a ``log`` file and the
``read_file_tail`` tool is offered, it reads the log first; then it proposes the first catalog entry
whose target patterns match the alert's source, citing the log when it shows an out-of-memory kill,
and proposes nothing otherwise. Its answer goes through the same checks as any model's.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agents.llm.diagnosis import ALERT_CLOSE, ALERT_OPEN
from agents.llm.models import register_model

SCRIPTED = "scripted"
CATALOG_HEADER = "Action catalog (trusted, from the operator's config):\n"


def _prompt(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _between(text: str, start: str, end: str) -> str:
    if start not in text:
        return ""
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _answer(messages: list[ModelMessage]) -> dict[str, Any]:
    prompt = _prompt(messages)
    catalog = _parsed(_between(prompt, CATALOG_HEADER, "\n")) or []
    alert = _parsed(_between(prompt, ALERT_OPEN, ALERT_CLOSE)) or {}
    log_text, log_call = "", None
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, ToolReturnPart) and part.tool_name == "read_file_tail":
                    log_text, log_call = part.model_response_str(), part.tool_call_id
    source = str(alert.get("source", ""))
    entry = next(
        (e for e in catalog if any(fnmatch.fnmatchcase(source, p) for p in e.get("target_patterns", []))),
        None,
    )
    oom = "out of memory" in log_text.lower()
    evidence: list[dict[str, Any]] = [
        {"observation": "the alert: " + str(alert.get("data", {}).get("summary", ""))[:200]}
    ]
    if oom:
        evidence.append(
            {"observation": "the service log shows the kernel's OOM killer", "tool_call_id": log_call}
        )
    if entry is None or not oom:
        return {
            "diagnosis": {
                "summary": f"{source or 'the service'}: no catalog action fits what the evidence shows",
                "evidence": evidence,
                "confidence": 0.3,
            },
            "proposal": None,
        }
    parameters = {"reason": "oom"} if "reason" in entry.get("parameters", {}) else {}
    return {
        "diagnosis": {
            "summary": f"{source} is out of memory: the kernel killed it and it is crash-looping",
            "evidence": evidence,
            "confidence": 0.8,
        },
        "proposal": {
            "catalog_entry": entry["name"],
            "target": source,
            "parameters": parameters,
            "risk_level": "low",
            "why": "a restart frees the leaked memory until the leak is fixed",
        },
    }


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    usage = RequestUsage(input_tokens=len(_prompt(messages)) // 4, output_tokens=60)  # about 4 chars a token
    asked = sum(1 for m in messages if isinstance(m, ModelResponse))
    alert = _parsed(_between(_prompt(messages), ALERT_OPEN, ALERT_CLOSE)) or {}
    log = alert.get("data", {}).get("log") if isinstance(alert.get("data"), dict) else None
    offered = {t.name for t in info.function_tools}
    if asked == 0 and log and "read_file_tail" in offered:
        call = ToolCallPart("read_file_tail", {"path": str(log), "tail_lines": 20}, tool_call_id="log-1")
        return ModelResponse(parts=[call], usage=usage)
    answer = _answer(messages)
    if info.output_tools:
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, answer, tool_call_id="answer")], usage=usage
        )
    return ModelResponse(parts=[TextPart(json.dumps(answer))], usage=usage)


register_model(SCRIPTED, FunctionModel(_respond, model_name=SCRIPTED))
