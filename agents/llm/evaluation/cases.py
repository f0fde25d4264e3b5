"""A recorded case: the alert, what the tools answered, the catalog, and the label.

One format for the shipped set (``agents/llm/eval_cases/incidents.jsonl``) and for real recordings
(``aiops eval export``): a JSON object per case, in a ``.jsonl`` file (one per line), a ``.json``
file (one case or a list), or a folder of those. Every file is bounded (``MAX_FILE_BYTES``, at most
``MAX_CASES`` cases) and every problem is one ``EvalInputError`` naming the file, the line and the
field, never a traceback.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.llm.settings import LlmSettings
from aiops.contracts.errors import AiopsError
from aiops.contracts.models import SystemEvent

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_CASES = 5000
MAX_TOOL_CALLS = 50
MAX_RESULT_CHARS = 262_144
CASE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
DATASET = Path(__file__).resolve().parent.parent / "eval_cases"


class EvalInputError(AiopsError, ValueError):
    """A case file or candidate settings the eval cannot use; the message says where and what."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)


class RecordedCall(_Model):
    """One tool call as recorded: same tool and same (normalized) arguments get ``result``."""

    tool: str = Field(min_length=1, max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = Field(default="", max_length=MAX_RESULT_CHARS)
    ok: bool = True


class Target(_Model):
    catalog_entry: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=500)


class Label(_Model):
    """What the right answer is. ``action`` null means "no action is right".

    ``rejected``: a proposal a person rejected (from a recording); repeating it is wrong. A case
    whose label is unknown (``expected: "unknown"``) is replayed and reported, never scored."""

    expected: Literal["action", "no_action", "unknown"]
    action: Target | None = None
    rejected: Target | None = None
    source: str = Field(default="dataset", max_length=200)  # dataset, or the human outcome it came from
    note: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> Label:
        if (self.expected == "action") != (self.action is not None):
            raise ValueError('label.action is set exactly when label.expected is "action"')
        return self


class Script(_Model):
    """For the scripted model only (CI): what it does beyond following the label."""

    propose: Target | None = None  # propose this instead of the label's action (e.g. out of catalog)
    extra_calls: list[RecordedCall] = Field(default_factory=list, max_length=10)  # unrecorded calls


class Case(_Model):
    id: str = Field(pattern=CASE_ID)
    title: str = Field(default="", max_length=300)
    alert: SystemEvent
    # The agent's settings at the time (catalog, tools, instructions); the candidate's override.
    settings: dict[str, Any] = Field(default_factory=dict)
    tool_calls: list[RecordedCall] = Field(default_factory=list, max_length=MAX_TOOL_CALLS)
    label: Label
    script: Script | None = None
    recorded: dict[str, Any] = Field(default_factory=dict)  # what the recording itself concluded

    def recorded_settings(self) -> LlmSettings:
        return LlmSettings.model_validate(self.settings)


# The case being replayed, for models that answer from it (``agents.llm.scripted``'s labelled model).
CURRENT_CASE: ContextVar[Case | None] = ContextVar("aiops_eval_case", default=None)


def _problem(err: ValidationError) -> str:
    parts = []
    for problem in err.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return "; ".join(parts)


def parse_case(document: Any, where: str) -> Case:
    if not isinstance(document, dict):
        raise EvalInputError(f"{where}: a case is a JSON object, got {type(document).__name__}")
    try:
        case = Case.model_validate(document)
        case.recorded_settings()
    except ValidationError as err:
        raise EvalInputError(f"{where}: invalid case: {_problem(err)}") from None
    return case


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise EvalInputError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} a case file may have")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except OSError as err:
        raise EvalInputError(f"{path}: cannot read it: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise EvalInputError(f"{path}: more than the {MAX_FILE_BYTES} bytes a case file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvalInputError(f"{path}: not UTF-8 text") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise EvalInputError(f"{where}: not valid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:
        raise EvalInputError(f"{where}: JSON nested too deeply") from None


def parse_cases(text: str, name: str) -> list[Case]:
    """Cases from one file's text: JSON Lines when ``name`` ends in ``.jsonl``, else JSON."""
    cases: list[Case] = []
    if name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{name} line {number}"
            cases.append(parse_case(_json(line, where), where))
            if len(cases) > MAX_CASES:
                raise EvalInputError(f"{name}: more than {MAX_CASES} cases")
        return cases
    document = _json(text, name)
    items = document if isinstance(document, list) else [document]
    if len(items) > MAX_CASES:
        raise EvalInputError(f"{name}: more than {MAX_CASES} cases")
    return [parse_case(item, f"{name} case {i}") for i, item in enumerate(items, 1)]


def load_cases(paths: list[Path] | None = None) -> list[Case]:
    """The cases of these files or folders (default: the shipped set); ids must be unique."""
    files: list[Path] = []
    for path in paths or [DATASET]:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        else:
            files.append(path)
    cases: list[Case] = []
    for file in files:
        cases += parse_cases(_read(file), str(file))
        if len(cases) > MAX_CASES:
            raise EvalInputError(f"more than {MAX_CASES} cases in all")
    if not cases:
        raise EvalInputError("no cases found in " + ", ".join(str(p) for p in files or paths or [DATASET]))
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise EvalInputError(f"case id {case.id!r} appears twice")
        seen.add(case.id)
    return cases


def load_candidate(text: str, name: str) -> LlmSettings:
    """The candidate: an llm agent config (its ``settings`` are used) or bare llm settings."""
    document = _json(text, name)
    if not isinstance(document, dict):
        raise EvalInputError(f"{name}: the candidate is a JSON object, got {type(document).__name__}")
    if "settings" in document and isinstance(document.get("type"), str):
        if document["type"] != "llm":
            raise EvalInputError(f"{name}: an agent config of type {document['type'][:40]!r}, not llm")
        document = document["settings"]
        if not isinstance(document, dict):
            raise EvalInputError(f"{name}: settings must be a JSON object")
    try:
        return LlmSettings.model_validate(document)
    except ValidationError as err:
        raise EvalInputError(f"{name}: invalid llm settings: {_problem(err)}") from None
