"""Resolving secret references (``env:NAME``, ``file:/path``), inside activities only.

Part of the agent SDK because agents resolve their own references too (the llm agent its model's
API key, a peer agent's config it borrows); the framework's activities use it to build the agent
instances they cache. The resolved config lives in the worker's memory, handed to the agent
instance; it never goes back into a workflow, so no secret reaches Temporal history or the
database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import SecretUnavailableError
from aiops.contracts.secret_refs import is_reference, is_secret_name


def resolve_reference(reference: str, where: str) -> str:
    kind, _, name = reference.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretUnavailableError(f"{where}: environment variable {name} is not set on this worker")
        return value
    try:
        return Path(name).read_text().strip()
    except OSError as err:
        raise SecretUnavailableError(f"{where}: cannot read secret file {name}: {err.strerror}") from None


def _resolve(settings: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in settings.items():
        path = f"{where}.{key}"
        if isinstance(value, dict):
            resolved[key] = _resolve(value, path, problems)
        elif isinstance(value, list):
            resolved[key] = [
                _resolve(item, f"{path}[{i}]", problems) if isinstance(item, dict) else item
                for i, item in enumerate(value)
            ]
        elif is_secret_name(str(key)) and is_reference(value):
            try:
                resolved[key] = resolve_reference(value, path)
            except SecretUnavailableError as err:
                problems.append(str(err))
                resolved[key] = None
        else:
            resolved[key] = value
    return resolved


def secret_problems(config: AgentConfig) -> list[str]:
    """Every reference in ``config`` this worker cannot resolve, the approval notice channels'
    included (they are resolved only when a notice is sent, never handed to the agent)."""
    problems: list[str] = []
    resolve_secrets(config, problems)
    for index, channel in enumerate(config.approval.notify):
        for field, reference in channel.secret_references().items():
            try:
                resolve_reference(reference, f"approval.notify[{index}].{field}")
            except SecretUnavailableError as err:
                problems.append(str(err))
    return problems


def resolve_secrets(config: AgentConfig, problems: list[str] | None = None) -> AgentConfig:
    """A copy of ``config`` with secret references replaced by their values (``config`` itself
    when it has none: a worker keeps one config per cached agent, not two).

    With ``problems`` given, unresolvable references are collected there (and left
    empty); without it, the first one raises ``SecretUnavailableError``.
    """
    found: list[str] = [] if problems is None else problems
    configs = [_resolve(i.config, f"integration {i.name!r} config", found) for i in config.integrations]
    settings = _resolve(config.settings, "settings", found)
    if problems is None and found:
        raise SecretUnavailableError("; ".join(found))
    unchanged = settings == config.settings and all(
        resolved == i.config for resolved, i in zip(configs, config.integrations, strict=True)
    )
    if unchanged and not found:
        return config
    integrations = [
        i.model_copy(update={"config": c}) for i, c in zip(config.integrations, configs, strict=True)
    ]
    # model_copy skips validation on purpose: the resolved values are literals now.
    return config.model_copy(update={"integrations": integrations, "settings": settings})
