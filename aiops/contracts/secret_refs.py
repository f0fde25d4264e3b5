"""Which settings are secrets, and how a secret must be written: as a reference.

Config travels through Temporal history and sits in PostgreSQL, so a secret
may never be a literal there. A setting whose name says it is a secret
(``token``, ``password``, ``api_key``, ...) must hold ``env:NAME`` or
``file:/path``; the worker resolves the reference inside activities only
(``agents/secrets.py``).
"""

from __future__ import annotations

import re
from typing import Any

SECRET_NAME = re.compile(
    r"(token|password|passwd|secret|api_?key|private_?key|access_?key|credentials?|auth_header)$",
    re.IGNORECASE,
)
REFERENCE = re.compile(r"\A(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)\Z")


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name.replace("-", "_")))


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and bool(REFERENCE.match(value))


def literal_secret_problems(settings: dict[str, Any], where: str) -> list[str]:
    """Every secret-named setting (at any depth) whose value is not a reference."""
    problems: list[str] = []
    for key, value in settings.items():
        path = f"{where}.{key}"
        if isinstance(value, dict):
            problems.extend(literal_secret_problems(value, path))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    problems.extend(literal_secret_problems(item, f"{path}[{index}]"))
        elif is_secret_name(str(key)) and value is not None and not is_reference(value):
            env_name = re.sub(r"[^A-Za-z0-9]+", "_", path.rsplit(".", 1)[-1]).upper()
            problems.append(
                f"{path}: a secret must be a reference, not a literal value; "
                f'write "env:{env_name}" (an environment variable on the worker) '
                f'or "file:/run/secrets/{key}" (a file the worker can read)'
            )
    return problems
