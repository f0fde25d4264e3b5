"""The ``llm`` agent's settings (``AgentConfig.settings``), validated into typed models.

Everything here travels into the diagnosis workflow's input, so it holds no secret: the API key
is a *reference* (``endpoint.api_key_ref``: ``env:NAME`` or ``file:/path``) resolved inside the
model-request activity on the worker that sends the request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.settings import distinct
from aiops.contracts.config import AgentConfig
from aiops.contracts.models import AGENT_ID_PATTERN, ActionType, RiskLevel
from aiops.contracts.secret_refs import is_reference

# The agent workflow waits for a decision at most ``runtime.decision_timeout_seconds``; a diagnosis
# (several model round trips and tool calls) needs far more than the 30 s default.
MIN_DECISION_TIMEOUT_SECONDS = 60.0


def _each_matching(values: list[str], pattern: re.Pattern[str], problem: str, cut: int) -> list[str]:
    """``values`` if each matches ``pattern``, else ``problem`` naming the first that does not
    (cut to ``cut`` characters: the value may be junk of any length)."""
    for value in values:
        if not pattern.match(value):
            raise ValueError(problem.format(value[:cut]))
    return values


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)


class EndpointSettings(_Settings):
    """Any OpenAI-compatible chat-completions endpoint, or a model registered in-process."""

    # "openai": an OpenAI-compatible HTTP endpoint; "registered": a model registered in the worker
    # process with ``agents.llm.models.register_model`` (tests, the demo's scripted model).
    provider: Literal["openai", "registered"] = "openai"
    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = Field(default="default", min_length=1, max_length=200)
    api_key_ref: str | None = None  # env:NAME or file:/path; None: no key (a local server)
    request_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_attempts: int = Field(default=2, ge=1, le=10)
    temperature: float | None = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=1024, ge=16, le=32768)
    # "tool": the answer is a tool call (best for capable models); "native": a JSON-schema
    # constrained answer (``response_format``; best for small local models, llama.cpp, vLLM);
    # "prompted": the schema in the prompt, the answer parsed as JSON; "compact": "native" with a
    # schema narrowed to this agent's catalog (entry names, and targets when they are literal, as
    # enums; short texts; confidence as a whole percent), for very small local models.
    output_mode: Literal["tool", "native", "prompted", "compact"] = "tool"
    # Offer the read-only tools to the model (off for a model that cannot call tools).
    use_tools: bool = True

    @field_validator("api_key_ref")
    @classmethod
    def _a_reference(cls, value: str | None) -> str | None:
        if value is not None and not is_reference(value):
            raise ValueError('endpoint.api_key_ref must be a reference: "env:NAME" or "file:/path"')
        return value


class Limits(_Settings):
    requests: int = Field(default=8, ge=1, le=10_000)
    tokens: int = Field(default=20_000, ge=1, le=100_000_000)
    tool_calls: int = Field(default=12, ge=0, le=100_000)


def _hourly() -> Limits:
    return Limits(requests=120, tokens=400_000, tool_calls=240)


class BudgetSettings(_Settings):
    per_event: Limits = Field(default_factory=Limits)
    per_hour: Limits = Field(default_factory=_hourly)


# Pydantic checks ``pattern`` with Rust's regex engine, where ``$`` is the end of the text (no final
# newline slips through, unlike Python's ``re``).
ParameterName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class ParameterSpec(_Settings):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    enum: list[str | int | float | bool] | None = None
    pattern: str | None = None  # a regex the whole (string) value must match
    required: bool = False
    max_length: int = Field(default=200, ge=1, le=2000)


class CatalogEntry(_Settings):
    """One action the model may propose: its type, which targets, which parameters, the risk floor."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    action_type: ActionType
    description: str = Field(default="", max_length=500)
    # fnmatch patterns a target resource must match (at least one); the model names one target.
    targets: list[str] = Field(min_length=1, max_length=50)
    # At most 20 parameters with plain names: a proposal's parameters are bounded by its entry's.
    parameters: dict[ParameterName, ParameterSpec] = Field(default_factory=dict, max_length=20)
    risk_floor: RiskLevel = RiskLevel.MEDIUM
    # A running agent (by id) whose hooks plan, execute, verify and roll the action back; None:
    # advisory only (approving it records the decision; executing it reports that nothing ran).
    executor_agent: str | None = None


class PrometheusSettings(_Settings):
    url: str
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_range_points: int = Field(default=500, ge=1, le=11_000)


MCP_SERVER_NAME = re.compile(r"\A[a-z][a-z0-9]{0,19}\Z")
MCP_TOOL_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")


class McpServerSettings(_Settings):
    """An MCP server whose tools the model may call; only those the operator marks read-only.

    Exactly one of ``command`` (a local server over stdio: the program and its arguments) and
    ``url`` (a streamable-HTTP server). Its tools are offered as ``mcp_<name>_<tool>``, and only
    the ones listed in ``read_only_tools`` (and not annotated ``readOnlyHint: false``)."""

    name: str
    command: list[str] | None = Field(default=None, min_length=1, max_length=50)
    url: str | None = Field(default=None, max_length=2000)
    read_only_tools: list[str] = Field(min_length=1, max_length=50)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MCP_SERVER_NAME.match(value):
            raise ValueError("an MCP server name is 1-20 lowercase letters and digits, a letter first")
        return value

    @field_validator("read_only_tools")
    @classmethod
    def _tools(cls, names: list[str]) -> list[str]:
        return _each_matching(names, MCP_TOOL_NAME, "read_only_tools: {!r} is not a tool name", cut=80)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an MCP server url is http:// or https:// (streamable HTTP)")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of command (stdio) and url (streamable HTTP)")
        return self


class ToolSettings(_Settings):
    prometheus: PrometheusSettings | None = None
    file_roots: list[str] = Field(default_factory=list, max_length=20)  # absolute directories
    # Running agents (by id) whose detector or dry-run plan the model may run.
    peer_agents: list[str] = Field(default_factory=list, max_length=20)
    agent_status: bool = True  # the agent's own status, pending approvals and recent problems
    # MCP servers whose read-only tools the model may call (agents/llm/tools.py, mcp_toolset).
    mcp_servers: Annotated[
        list[McpServerSettings], distinct("MCP server names must be unique", key=lambda s: s.name)
    ] = Field(default_factory=list, max_length=5)
    max_bytes: int = Field(default=8192, ge=256, le=262_144)  # per tool result
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)  # per tool call

    @field_validator("file_roots")
    @classmethod
    def _absolute(cls, roots: list[str]) -> list[str]:
        for root in roots:
            if not root.startswith("/"):
                raise ValueError(f"tools.file_roots: {root[:100]!r} is not an absolute path")
        return roots

    @field_validator("peer_agents")
    @classmethod
    def _agent_ids(cls, ids: list[str]) -> list[str]:
        return _each_matching(ids, AGENT_ID_PATTERN, "tools.peer_agents: {!r} is not an agent id", cut=100)


class LlmSettings(_Settings):
    endpoint: EndpointSettings = Field(default_factory=EndpointSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    catalog: Annotated[
        list[CatalogEntry], distinct("catalog entry names must be unique", key=lambda e: e.name)
    ] = Field(default_factory=list, max_length=50)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    # How long one diagnosis may run; defaults to the decision timeout minus a margin.
    diagnosis_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    escalation_agent: str | None = None  # an agent id that receives an alert for every "no proposal"
    instructions: str = Field(default="", max_length=4000)  # added to the built-in system prompt

    @field_validator("escalation_agent")
    @classmethod
    def _agent_id(cls, value: str | None) -> str | None:
        if value is not None and not AGENT_ID_PATTERN.match(value):
            raise ValueError("escalation_agent is not an agent id")
        return value

    def entry(self, name: str) -> CatalogEntry | None:
        return next((e for e in self.catalog if e.name == name), None)


def parse_settings(settings: dict[str, Any]) -> LlmSettings:
    return LlmSettings.model_validate(settings)


def settings_problems(config: AgentConfig) -> list[str]:
    """Everything wrong with an ``llm`` agent config, as messages that never echo a value."""
    problems: list[str] = []
    try:
        settings = parse_settings(config.settings)
    except ValidationError as err:
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "settings"
            problems.append(f"settings.{where}: {e['msg']}")
        settings = None
    if config.runtime.local_decisions:
        problems.append(
            "runtime.local_decisions must be false for an llm agent: a diagnosis waits on a durable "
            "workflow for minutes, which a local activity must not"
        )
    if config.runtime.decision_timeout_seconds < MIN_DECISION_TIMEOUT_SECONDS:
        problems.append(
            f"runtime.decision_timeout_seconds must be at least {MIN_DECISION_TIMEOUT_SECONDS:.0f} for an "
            "llm agent (a diagnosis is several model round trips); 300 or more is typical"
        )
    if settings is not None:
        for entry in settings.catalog:
            for key, spec in entry.parameters.items():
                if spec.pattern is not None:
                    try:
                        re.compile(spec.pattern)
                    except re.error:
                        problems.append(f"settings.catalog.{entry.name}.parameters.{key}: invalid pattern")
        if settings.diagnosis_timeout_seconds is not None and (
            settings.diagnosis_timeout_seconds >= config.runtime.decision_timeout_seconds
        ):
            problems.append(
                "settings.diagnosis_timeout_seconds must be below runtime.decision_timeout_seconds"
            )
    return problems


def diagnosis_timeout(config: AgentConfig, settings: LlmSettings) -> float:
    """How long one diagnosis may run: leaves the decision activity time to record the outcome."""
    if settings.diagnosis_timeout_seconds is not None:
        return settings.diagnosis_timeout_seconds
    decision = config.runtime.decision_timeout_seconds
    return max(decision - min(30.0, decision / 5), 1.0)
