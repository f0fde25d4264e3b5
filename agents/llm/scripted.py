"""A scripted diagnosis model for the demo (``scripts/demo.sh --llm``): no network, no weights.

Importing this module registers it as ``endpoint: {"provider": "registered", "model": "scripted"}``
in the worker process (``AIOPS_AGENT_MODULES=agents.llm,agents.llm.scripted``). It is Pydantic AI's
``FunctionModel`` playing a careful SRE: when the alert names a ``log`` file and the
``read_file_tail`` tool is offered, it reads the log first; then it proposes the first catalog entry
whose target patterns match the alert's source, citing the log when it shows an out-of-memory kill,
and proposes nothing otherwise. Its answer goes through the same checks as any model's.

It also registers ``scripted-label`` for ``aiops eval`` (CI): replaying a case, it makes the case's
recorded tool calls (one per turn, those offered), then the case script's extra calls (calls the
recording does not hold), and answers the case's label (or the script's ``propose``, to test an
out-of-catalog attempt), citing the calls. It proves the eval pipeline end to end, not a model.
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
from agents.llm.evaluation.cases import CURRENT_CASE
from agents.llm.models import register_model

SCRIPTED = "scripted"
SCRIPTED_LABEL = "scripted-label"
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


def _output(answer: dict[str, Any], info: AgentInfo, usage: RequestUsage) -> ModelResponse:
    if info.output_tools:
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, answer, tool_call_id="answer")], usage=usage
        )
    return ModelResponse(parts=[TextPart(json.dumps(answer))], usage=usage)


def _parameters(catalog: list[Any], entry_name: str) -> dict[str, Any]:
    """Values for the entry's required parameters: the first allowed one, or a plain word."""
    entry = next((e for e in catalog if isinstance(e, dict) and e.get("name") == entry_name), None)
    values: dict[str, Any] = {}
    for key, spec in (entry or {}).get("parameters", {}).items():
        if isinstance(spec, dict) and spec.get("required"):
            enum = spec.get("enum")
            kind = spec.get("type", "string")
            values[key] = (
                enum[0] if enum else {"integer": 1, "number": 1.0, "boolean": True}.get(kind, "eval")
            )
    return values


def _respond_from_label(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    usage = RequestUsage(input_tokens=len(_prompt(messages)) // 4, output_tokens=60)
    case = CURRENT_CASE.get()
    if case is None:
        raise LookupError("the scripted-label model answers only inside `aiops eval`")
    offered = {t.name for t in info.function_tools}
    calls = [c for c in case.tool_calls if c.tool in offered]
    calls += case.script.extra_calls if case.script is not None else []
    step = sum(1 for m in messages if isinstance(m, ModelResponse))
    if step < len(calls):
        call = calls[step]
        return ModelResponse(
            parts=[ToolCallPart(call.tool, dict(call.arguments), tool_call_id=f"rec-{step}")], usage=usage
        )
    wanted = case.script.propose if case.script is not None and case.script.propose else case.label.action
    evidence = [
        {"observation": f"the {c.tool} result", "tool_call_id": f"rec-{i}"} for i, c in enumerate(calls)
    ]
    answer: dict[str, Any] = {
        "diagnosis": {"summary": case.title or "as labelled", "evidence": evidence[:20], "confidence": 0.9},
        "proposal": None,
    }
    if wanted is not None:
        catalog = _parsed(_between(_prompt(messages), CATALOG_HEADER, "\n")) or []
        answer["proposal"] = {
            "catalog_entry": wanted.catalog_entry,
            "target": wanted.target,
            "parameters": _parameters(catalog, wanted.catalog_entry),
            "risk_level": "low",
            "why": "as the label says",
        }
    return _output(answer, info, usage)


register_model(SCRIPTED, FunctionModel(_respond, model_name=SCRIPTED))
register_model(SCRIPTED_LABEL, FunctionModel(_respond_from_label, model_name=SCRIPTED_LABEL))
