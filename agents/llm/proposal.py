"""What the model answers (``ModelAnswer``), what a diagnosis records (``DiagnosisResult``), and the
only way an answer becomes an action (``to_action``): through the catalog, never around it.

Pure code, no I/O: it runs in workflow code (deterministic) and again in the agent.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from agents.llm.settings import CatalogEntry, LlmSettings, ParameterSpec
from aiops.contracts.errors import AiopsError
from aiops.contracts.limits import MAX_ACTION_INPUT_BYTES, json_size, over_budget
from aiops.contracts.models import AgentAction, RiskLevel, SystemEvent

MAX_TEXT = 2000
# A target is a resource name: no whitespace, quotes, shell or glob metacharacters, whatever the
# catalog's patterns would otherwise match (fnmatch's ``*`` matches ``;`` and spaces too).
TARGET = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:/@=+-]{0,199}\Z")
MAX_DESCRIPTION = 4000


class Evidence(BaseModel):
    """One finding, and the tool call it rests on (its ``tool_call_id``), if any."""

    observation: str = Field(max_length=MAX_TEXT, description="what was observed")
    tool_call_id: str | None = Field(
        default=None,
        max_length=200,
        description="the id of the tool call whose result shows it; null for the alert itself",
    )


class DiagnosisAnswer(BaseModel):
    summary: str = Field(max_length=MAX_TEXT, description="the likely cause, in one or two sentences")
    evidence: list[Evidence] = Field(default_factory=list, max_length=20)
    confidence: float = Field(ge=0.0, le=1.0, description="0 (a guess) to 1 (certain)")


class ProposedAction(BaseModel):
    catalog_entry: str = Field(max_length=64, description="the name of one entry of the action catalog")
    target: str = Field(max_length=500, description="the one resource to act on")
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    risk_level: RiskLevel = Field(default=RiskLevel.MEDIUM, description="your estimate of the risk")
    why: str = Field(default="", max_length=MAX_TEXT, description="why this action fixes the cause")


class ModelAnswer(BaseModel):
    """The model's whole answer: a diagnosis and at most one proposed action from the catalog."""

    diagnosis: DiagnosisAnswer
    proposal: ProposedAction | None = Field(
        default=None, description="null when no catalog action is warranted"
    )


# ----- the compact answer: a schema narrowed to one catalog, for very small models ------------------

COMPACT_TEXT = 200
_GLOB = re.compile(r"[*?\[]")


class CompactDiagnosis(BaseModel):
    summary: str = Field(max_length=COMPACT_TEXT, description="the likely cause, in one sentence")
    confidence_percent: int = Field(ge=0, le=100, description="0 (a guess) to 100 (certain)")


def _literal(values: list[Any]) -> Any:
    return Literal[tuple(values)]


def _parameter_type(spec: ParameterSpec) -> Any:
    if spec.enum:
        return _literal(list(spec.enum))
    kinds: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
    return kinds[spec.type]


@functools.lru_cache(maxsize=64)
def _compact_type(catalog_json: str) -> type[BaseModel]:
    from agents.llm.settings import CatalogEntry

    catalog = [CatalogEntry.model_validate(e) for e in json.loads(catalog_json)]
    names = [e.name for e in catalog]
    targets = [t for e in catalog for t in e.targets]
    target: Any = (
        _literal(sorted(set(targets))) if targets and not any(_GLOB.search(t) for t in targets) else str
    )
    fields: dict[str, Any] = {
        "catalog_entry": (_literal(names), Field(description="the name of one entry of the action catalog")),
        "target": (target, Field(max_length=200, description="the one resource to act on")),
        "risk_level": (RiskLevel, Field(description="your estimate of the risk")),
        "why": (str, Field(max_length=COMPACT_TEXT, description="why this action fixes the cause")),
    }
    specs: dict[str, ParameterSpec] = {}
    for entry in catalog:
        for key, spec in entry.parameters.items():
            specs.setdefault(key, spec)
    if specs:
        optional: dict[str, Any] = {key: (_parameter_type(spec) | None, None) for key, spec in specs.items()}
        parameters = create_model("CompactParameters", **optional)
        fields["parameters"] = (parameters, Field(default_factory=parameters))
    proposal = create_model("CompactProposal", **fields)
    return create_model(
        "CompactAnswer",
        __doc__="A diagnosis and at most one proposed action from the catalog (null when none fits).",
        diagnosis=(CompactDiagnosis, ...),
        proposal=(
            proposal | None,
            Field(default=None, description="null when no catalog action is warranted"),
        ),
    )


def compact_answer_type(settings: LlmSettings) -> type[BaseModel]:
    """The compact answer's type for this catalog (pure and cached: it is built in workflow code).

    Enums only narrow what the model can write to what the catalog allows anyway; a null proposal
    stays possible, and ``check_proposal`` checks the result as for any answer."""
    catalog = [e.model_dump(mode="json") for e in settings.catalog]
    return _compact_type(json.dumps(catalog, sort_keys=True))


def from_compact(answer: BaseModel) -> ModelAnswer:
    """The ``ModelAnswer`` a compact answer stands for."""
    data = answer.model_dump(mode="json")
    diagnosis = data["diagnosis"]
    diagnosis["confidence"] = diagnosis.pop("confidence_percent") / 100
    proposal = data.get("proposal")
    if proposal is not None:
        proposal["parameters"] = {
            k: v for k, v in (proposal.get("parameters") or {}).items() if v is not None
        }
    return ModelAnswer.model_validate(data)


class ToolCallRecord(BaseModel):
    """One tool call the diagnosis made, as the audit trail and the approver see it."""

    tool_call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = ""  # truncated to the tool's byte bound
    ok: bool = True


class Usage(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class DiagnosisResult(BaseModel):
    """What one diagnosis workflow returns. ``proposal`` is set only when it passed the catalog."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str
    event_id: str
    model: str = ""
    diagnosis: DiagnosisAnswer | None = None
    proposal: ProposedAction | None = None
    risk_level: RiskLevel | None = None  # max(model's, catalog floor) when there is a proposal
    no_proposal_reason: str | None = None  # why there is no proposal (None when there is one)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    refused: bool = False  # a budget refused the diagnosis before or while it ran
    unsupported_evidence: list[str] = Field(default_factory=list)  # cited tool call ids that do not exist


NONE_PROPOSED = "the model proposed no action"
HOURLY_BUDGET_SPENT = "hourly budget spent"
EVENT_BUDGET_SPENT = "per-event budget spent"
PROPOSAL_REFUSED = "proposal refused"
TOO_SLOW = "the diagnosis took longer than"


def outcome_of(result: DiagnosisResult) -> str:
    """The diagnosis' outcome in one word (metrics label, audit row): see ``agents.llm.metrics``."""
    reason = result.no_proposal_reason or ""
    if result.proposal is not None:
        return "proposal"
    if reason.startswith(HOURLY_BUDGET_SPENT):
        return "budget_per_hour"
    if reason.startswith(EVENT_BUDGET_SPENT):
        return "budget_per_event"
    if reason == NONE_PROPOSED:
        return "none_proposed"
    if reason.startswith(PROPOSAL_REFUSED):
        return "out_of_catalog"
    if reason.startswith(TOO_SLOW):
        return "timeout"
    return "model_error"


class ProposalRefused(AiopsError, ValueError):
    """A proposal outside the catalog (or its parameters); the message says why, never executes."""


def _check_value(key: str, value: Any, spec: ParameterSpec) -> None:
    kinds: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "number": (int, float),
        "boolean": (bool,),
    }
    if isinstance(value, bool) and spec.type != "boolean":
        raise ProposalRefused(f"parameter {key!r} must be a {spec.type}")
    if not isinstance(value, kinds[spec.type]):
        raise ProposalRefused(f"parameter {key!r} must be a {spec.type}")
    if spec.enum is not None and value not in spec.enum:
        raise ProposalRefused(f"parameter {key!r} is not one of the allowed values")
    if isinstance(value, str):
        if len(value) > spec.max_length:
            raise ProposalRefused(f"parameter {key!r} is longer than {spec.max_length} characters")
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            raise ProposalRefused(f"parameter {key!r} does not match the allowed pattern")


def check_proposal(proposal: ProposedAction, settings: LlmSettings) -> tuple[CatalogEntry, RiskLevel]:
    """The catalog entry a proposal uses and its effective risk; ``ProposalRefused`` otherwise.

    The effective risk is the higher of the model's estimate and the entry's floor: a model can
    raise the risk of what it proposes, never lower it below what the operator set."""
    entry = settings.entry(proposal.catalog_entry)
    if entry is None:
        raise ProposalRefused(f"{proposal.catalog_entry[:64]!r} is not in the action catalog")
    if not TARGET.match(proposal.target) or ".." in proposal.target:
        raise ProposalRefused(f"target {proposal.target[:100]!r} is not a plain resource name")
    if not any(fnmatch.fnmatchcase(proposal.target, pattern) for pattern in entry.targets):
        raise ProposalRefused(f"target {proposal.target[:100]!r} is not allowed for {entry.name!r}")
    unknown = sorted(set(proposal.parameters) - set(entry.parameters))
    if unknown:
        raise ProposalRefused(f"parameters {', '.join(repr(k[:40]) for k in unknown)} are not allowed")
    for key, spec in entry.parameters.items():
        if key in proposal.parameters:
            _check_value(key, proposal.parameters[key], spec)
        elif spec.required:
            raise ProposalRefused(f"parameter {key!r} is required for {entry.name!r}")
    risk = max(proposal.risk_level, entry.risk_floor, key=lambda r: r.rank)
    return entry, risk


def to_action(result: DiagnosisResult, settings: LlmSettings, event: SystemEvent) -> AgentAction:
    """The ordinary ``AgentAction`` for a checked proposal; the diagnosis is the approver's evidence.

    Re-checks the proposal against the catalog (the agent's own config), so a result from an
    older or foreign diagnosis can never slip past it."""
    assert result.proposal is not None and result.diagnosis is not None
    proposal = result.proposal
    entry, risk = check_proposal(proposal, settings)
    if result.risk_level is not None and result.risk_level.rank > risk.rank:
        risk = result.risk_level
    diagnosis = result.diagnosis
    evidence_lines = "\n".join(
        f"- {e.observation}" + (f" [tool call {e.tool_call_id}]" if e.tool_call_id else "")
        for e in diagnosis.evidence
    )
    description = (
        f"[llm proposal] {entry.name} ({entry.action_type.value}) on {proposal.target}\n"
        f"Diagnosis (confidence {diagnosis.confidence:.2f}, model-written, unverified): {diagnosis.summary}\n"
        f"Why: {proposal.why}\n"
        f"Evidence:\n{evidence_lines or '- (none)'}\n"
        f"Risk: {risk.value} (model said {proposal.risk_level.value}, "
        f"catalog floor {entry.risk_floor.value}); "
        f"{len(result.tool_calls)} read-only tool call(s)"
    )
    action = AgentAction(
        id=f"llm_{event.id}",
        agent_id=result.agent_id,
        type=entry.action_type,
        description=description[:MAX_DESCRIPTION],
        target_resources=[proposal.target],
        risk_level=risk,
        estimated_impact=(entry.description or f"{entry.action_type.value} on {proposal.target}")[:500],
        parameters={
            **proposal.parameters,
            "catalog_entry": entry.name,
            "diagnosis": {
                "summary": diagnosis.summary,
                "confidence": diagnosis.confidence,
                "evidence": [e.model_dump() for e in diagnosis.evidence],
                "unsupported_evidence": result.unsupported_evidence,
                "why": proposal.why,
                "model_risk": proposal.risk_level.value,
                "catalog_risk_floor": entry.risk_floor.value,
                "model": result.model,
                "usage": result.usage.model_dump(),
                "tool_calls": [_shown(c) for c in result.tool_calls[:ACTION_TOOL_CALLS]],
            },
        },
    )
    return fitted(action)


# What an action keeps of the diagnosis' tool calls: the approver's evidence, not the whole record
# (the ``llm_diagnosis`` audit row has every call).
ACTION_TOOL_CALLS = 20
ACTION_TOOL_RESULT_CHARS = 2000


def _shown(call: ToolCallRecord) -> dict[str, Any]:
    shown = call.model_dump(mode="json")
    if len(call.result) > ACTION_TOOL_RESULT_CHARS:
        cut = call.result[:ACTION_TOOL_RESULT_CHARS]
        shown["result"] = f"{cut}\n[truncated: {len(call.result)} characters]"
    return shown


def fitted(action: AgentAction) -> AgentAction:
    """The action if its start input fits ``MAX_ACTION_INPUT_BYTES``; else the diagnosis' tool calls,
    then its evidence, are dropped (with a note saying so); ``ProposalRefused`` if it still does not
    fit. An action's input over the budget would fail the agent's workflow task on every retry."""
    size = json_size(action.model_dump(mode="json"))
    if size <= MAX_ACTION_INPUT_BYTES:
        return action
    diagnosis = dict(action.parameters.get("diagnosis") or {})
    for key in ("tool_calls", "evidence"):
        if key in diagnosis:
            diagnosis[key] = [over_budget("the action", size, MAX_ACTION_INPUT_BYTES) + f"; {key} left out"]
            action = action.model_copy(update={"parameters": {**action.parameters, "diagnosis": diagnosis}})
            size = json_size(action.model_dump(mode="json"))
            if size <= MAX_ACTION_INPUT_BYTES:
                return action
    raise ProposalRefused(over_budget("the proposed action", size, MAX_ACTION_INPUT_BYTES))


# Keys the llm agent adds to a proposal's parameters; stripped before an executor agent sees them.
LLM_PARAMETER_KEYS = ("catalog_entry", "diagnosis")
