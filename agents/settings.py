"""Typed agent settings: the pydantic model an agent type declares for ``AgentConfig.settings``.

``AgentConfig.settings`` crosses every boundary as free-form JSON (the operator writes it, the config
store keeps it, workflows carry it). An agent type that declares a settings model gets it validated
once, by ``BaseAgent``, into a typed, frozen object; every problem is reported as one line that names
the setting by its path (``settings.roots[0].path: ...``), which is what the operator sees when a
config version is refused.

Write a model by subclassing ``AgentSettings`` (unknown keys are refused: a typo must not silently
become a default) and give the agent class its type: ``class DiskAgent(BaseAgent[DiskSettings])``.
Constraints go where pydantic puts them (``Field(ge=..., le=...)``, ``Literal``, validators raising
``ValueError`` with a sentence that says what to write instead); ``Field(description=...)`` is quoted
when a required setting is missing.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from aiops.contracts.errors import AiopsError

M = TypeVar("M", bound=BaseModel)


Where = tuple[int | str, ...]


class SettingProblems(AiopsError, ValueError):
    """Raise from a model validator (``mode="after"``) to refuse settings that are wrong together,
    naming each one at fault by its path: ``SettingProblems([(("roots", 0, "path"), "...")])``."""

    def __init__(self, problems: list[tuple[Where, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


class AgentSettings(BaseModel):
    """Base of a declared settings model: frozen, and unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FreeFormSettings(BaseModel):
    """What an agent type without a settings model gets: any keys, kept as they are.

    Such an agent reads ``self.config.settings`` itself and checks it in
    ``_validate_config_specific``, as agents did before typed settings existed.
    """

    model_config = ConfigDict(extra="allow", frozen=True)


def distinct(problem: str, key: Callable[[Any], Hashable] | None = None) -> AfterValidator:
    """A list setting's check, ``Annotated[list[X], distinct(problem)]``: no two items the same
    (or sharing a ``key``), else ``problem``. A list that names one thing twice is a slip, not a
    wish to act twice. It runs after the list's own checks (its length), as a field validator does."""

    def check(items: list[Any]) -> list[Any]:
        keys = [key(item) for item in items] if key is not None else items
        if len(set(keys)) != len(keys):
            raise ValueError(problem)
        return items

    return AfterValidator(check)


def parse_settings(model: type[M], raw: Mapping[str, Any], agent_type: str) -> tuple[M | None, list[str]]:
    """``raw`` validated against ``model``: the settings, or None and one line per problem."""
    try:
        return model.model_validate(dict(raw)), []
    except ValidationError as err:
        return None, settings_problems(err, model, agent_type)


def settings_problems(err: ValidationError, model: type[BaseModel], agent_type: str) -> list[str]:
    """One ``settings.<path>: <what is wrong>`` line per error; input values are never echoed
    (a setting may hold a resolved secret)."""
    problems = []
    for error in err.errors(include_url=False, include_input=False):
        loc = error["loc"]
        raised = error.get("ctx", {}).get("error")
        if isinstance(raised, SettingProblems):
            problems += [f"{_path(loc + at)}: {message}" for at, message in raised.problems]
            continue
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            known = ", ".join(owner.model_fields) if owner is not None else "see the agent's documentation"
            message = f"unknown setting for the {agent_type} agent (known: {known})"
        elif error["type"] == "value_error":
            message = str(raised or message)
        elif error["type"] == "missing":
            field = _field_at(model, loc)
            message = "is required" + (f": {field.description}" if field and field.description else "")
        problems.append(f"{_path(loc)}: {message}")
    return problems


def _path(loc: Where) -> str:
    return "settings" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _field_at(model: type[BaseModel], loc: Where) -> FieldInfo | None:
    owner = _model_at(model, loc[:-1])
    if owner is None or not loc or not isinstance(loc[-1], str):
        return None
    return owner.model_fields.get(loc[-1])


def _model_at(model: type[BaseModel], loc: Where) -> type[BaseModel] | None:
    """The model class that holds the value at ``loc`` (list indexes and optionals are seen through)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
