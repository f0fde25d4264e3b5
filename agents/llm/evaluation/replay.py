"""Replay one recorded case against a candidate model, prompt or catalog, in-process.

The diagnoser is the real one: the same system prompt (``diagnosis.system_prompt``), user prompt
(``diagnosis.user_prompt``), tool definitions and their enabling rules (``diagnosis.toolset``,
``diagnosis.tool_available``), output types (``diagnosis.output_spec``), retries, usage limits,
and the same handling of the answer (``workflow.settle``: catalog check, risk floor, evidence).
Only two things differ from a worker: no Temporal (Pydantic AI runs directly), and the tools are
answered from the recording (``ReplayToolset``), so nothing touches a real system: a call with the
recorded tool and (normalized) arguments gets the recorded answer, any other call gets "not
available in the recording" and is counted. MCP tools are not offered (their schemas are not
recorded); nothing is audited and no budget ledger is charged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import ResolveModelId
from pydantic_ai.models import Model, ModelResolutionContext
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset

from agents.llm import diagnosis as d
from agents.llm import models, tools
from agents.llm.contracts import DiagnosisDeps, DiagnosisInput
from agents.llm.evaluation.cases import CURRENT_CASE, Case, RecordedCall
from agents.llm.proposal import (
    DiagnosisResult,
    ModelAnswer,
    outcome_of,
)
from agents.llm.settings import LlmSettings
from agents.llm.workflow import drive_model, model_settings_for

NOT_RECORDED = (
    "error: not available in the recording (this tool call was not made when the case was recorded)"
)
EVAL_AGENT_ID = "eval"
DEFAULT_TIMEOUT_SECONDS = 300.0
# Settings a candidate may replace; the rest (catalog, tools, instructions when not given) is the case's.
CANDIDATE_FIELDS = ("endpoint", "budgets", "catalog", "tools", "instructions", "diagnosis_timeout_seconds")


# ----- matching a call to the recording --------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value.strip()
    return value


def call_key(tool: str, arguments: dict[str, Any], definition: ToolDefinition | None = None) -> str:
    """The identity of a call: the tool name and its arguments, with the tool's defaults filled in,
    nulls dropped, strings stripped, whole floats as integers, keys sorted."""
    args = dict(arguments)
    if definition is not None:
        properties = definition.parameters_json_schema.get("properties", {})
        for name, spec in properties.items():
            if name not in args and isinstance(spec, dict) and "default" in spec:
                args[name] = spec["default"]
    return tool + " " + json.dumps(_canonical(args), sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class ReplayLog:
    """What the replay answered: calls found in the recording and calls that were not."""

    answered: int = 0
    unrecorded_count: int = 0
    unrecorded: list[str] = field(default_factory=list)  # the first ten call keys, bounded


class ReplayToolset(WrapperToolset[DiagnosisDeps]):
    """The agent's own tools (names, schemas, enabling rules), answered from the recording."""

    def __init__(self, wrapped: AbstractToolset[DiagnosisDeps], recorded: list[RecordedCall], log: ReplayLog):
        super().__init__(wrapped)
        self._recorded = recorded
        self._log = log

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[DiagnosisDeps],
        tool: ToolsetTool[DiagnosisDeps],
    ) -> Any:
        key = call_key(name, tool_args, tool.tool_def)
        for call in self._recorded:
            if call.tool == name and call_key(call.tool, call.arguments, tool.tool_def) == key:
                self._log.answered += 1
                text = call.result
                if text.startswith(tools.TOOL_OUTPUT_OPEN):  # recorded as the model saw it
                    return text
                return tools.delimit(tools.bounded(text, ctx.deps.tools.max_bytes))
        self._log.unrecorded_count += 1
        if len(self._log.unrecorded) < 10:
            self._log.unrecorded.append(key[:300])
        return tools.delimit(NOT_RECORDED)


# ----- the candidate's model --------------------------------------------------------------------


def _resolve(ctx: ModelResolutionContext[Any], model_id: str) -> Model | None:
    """As ``models.resolve``, with the API key reference resolved here (no activity in an eval)."""
    if model_id != models.MODEL_ID:
        return None
    endpoint = ctx.deps.endpoint
    if endpoint.provider == "openai" and endpoint.api_key_ref is not None:
        from agents.secrets import resolve_reference

        return models.openai_model(endpoint, resolve_reference(endpoint.api_key_ref, "endpoint.api_key_ref"))
    return models.build_model(endpoint)


def eval_agent(recorded: list[RecordedCall], log: ReplayLog) -> Agent[DiagnosisDeps, ModelAnswer]:
    """The diagnosis agent of ``agents.llm.diagnosis`` without Temporal, its tools replayed."""
    return Agent(
        models.MODEL_ID,
        name=d.AGENT_NAME,
        deps_type=DiagnosisDeps,
        output_type=ModelAnswer,
        instructions=d.system_prompt,
        toolsets=[ReplayToolset(d.toolset.filtered(d.tool_available), recorded, log)],
        retries=d.RETRIES,
        capabilities=[ResolveModelId(_resolve)],
    )


# ----- one case ----------------------------------------------------------------------------------


def effective_settings(case: Case, candidate: LlmSettings | None, given: set[str]) -> LlmSettings:
    """The case's recorded settings with the candidate's given fields in their place (no MCP)."""
    settings = case.recorded_settings()
    if candidate is not None:
        update = {name: getattr(candidate, name) for name in CANDIDATE_FIELDS if name in given}
        settings = settings.model_copy(update=update)
    if settings.tools.mcp_servers:
        settings = settings.model_copy(
            update={"tools": settings.tools.model_copy(update={"mcp_servers": []})}
        )
    return settings


class CaseRun(BaseModel):
    """What replaying one case produced (before scoring)."""

    case_id: str
    result: DiagnosisResult
    outcome: str
    unrecorded_calls: int = 0
    unrecorded: list[str] = Field(default_factory=list)
    seconds: float = 0.0


async def replay_case(
    case: Case, candidate: LlmSettings | None, given: set[str], case_timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> CaseRun:
    """Diagnose ``case.alert`` with the candidate, the tools answered from the recording."""
    settings = effective_settings(case, candidate, given)
    timeout = settings.diagnosis_timeout_seconds or case_timeout
    request = DiagnosisInput(
        agent_id=EVAL_AGENT_ID,
        task_queue=EVAL_AGENT_ID,
        event=case.alert,
        settings=settings,
        timeout_seconds=timeout,
    )
    endpoint = settings.endpoint
    result = DiagnosisResult(
        agent_id=EVAL_AGENT_ID, event_id=case.alert.id, model=f"{endpoint.provider}:{endpoint.model}"
    )
    deps = DiagnosisDeps(
        agent_id=EVAL_AGENT_ID,
        event_id=case.alert.id,
        task_queue=EVAL_AGENT_ID,
        endpoint=endpoint,
        tools=settings.tools,
    )
    log = ReplayLog()
    agent = eval_agent(case.tool_calls, log)
    token = CURRENT_CASE.set(case)
    started = time.monotonic()
    try:
        await drive_model(
            agent.iter(
                d.user_prompt(request),
                deps=deps,
                output_type=d.output_spec(settings),
                usage_limits=d.usage_limits(settings.budgets.per_event),
                model_settings=model_settings_for(endpoint),
            ),
            result,
            settings,
            timeout_seconds=timeout,
            describe=_described,
            limit_seconds=timeout,
        )
    finally:
        CURRENT_CASE.reset(token)
    seconds = time.monotonic() - started
    return CaseRun(
        case_id=case.id,
        result=result,
        outcome=outcome_of(result),
        unrecorded_calls=log.unrecorded_count,
        unrecorded=log.unrecorded,
        seconds=round(seconds, 3),
    )


def _described(err: Exception) -> str:
    """A failed model call in an eval, in the words the eval has always used (outermost, bounded)."""
    return f"{type(err).__name__}: {str(err)[:400]}"
