"""The ansible agent's settings: the playbook it keeps applied, and how ansible-runner runs it."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Annotated, Any

from pydantic import Field

from agents.builtin.common import AbsolutePath, OwnFolder
from agents.settings import AgentSettings
from aiops.contracts.models import RiskLevel

TagName = Annotated[str, Field(strict=True, min_length=1)]


class AnsibleSettings(AgentSettings):
    """See docs/agents/ansible.md for each setting."""

    playbook: AbsolutePath = Field(description="the absolute path of the playbook to keep applied")
    inventory: Annotated[str, Field(strict=True, min_length=1)] | dict[str, Any] | None = Field(
        default=None,
        description="a path, an inline INI inventory, or a YAML-style dict; "
        "default: localhost over the local connection, with the worker's Python",
    )
    extra_vars: dict[str, Any] = Field(default_factory=dict, description="variable names to values")
    limit: Annotated[str, Field(strict=True)] | None = Field(default=None, description="a host pattern")
    tags: list[TagName] = Field(default_factory=list)
    skip_tags: list[TagName] = Field(default_factory=list)
    private_data_dir: OwnFolder | None = Field(
        default=None, description="ansible-runner's directory; default <temp dir>/aiops-ansible/<agent id>"
    )
    rollback_playbook: AbsolutePath | None = None
    risk_level: RiskLevel = RiskLevel.MEDIUM
    timeout_seconds: int = Field(default=900, strict=True, ge=1, le=86400)
    max_diff_chars: int = Field(default=60000, strict=True, ge=1000, le=1_000_000)

    def runner_dir(self, agent_id: str) -> str:
        """ansible-runner's private data directory (artifacts, and the action ledger below it)."""
        return self.private_data_dir or os.path.join(tempfile.gettempdir(), "aiops-ansible", agent_id)

    def inventory_or_local(self) -> str | dict[str, Any]:
        """The inventory; by default this host over the local connection, with the worker's Python."""
        if self.inventory is not None:
            return self.inventory
        return f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}"


def playbook_problems(settings: AnsibleSettings) -> list[str]:
    """What this worker sees wrong with the configured playbooks: missing, or not readable."""
    problems = []
    for name in ("playbook", "rollback_playbook"):
        path = getattr(settings, name)
        if path is None:
            continue
        if not os.path.isfile(path):
            problems.append(f"settings.{name}: {path} is not a file on this worker")
        elif not os.access(path, os.R_OK):
            problems.append(f"settings.{name}: {path} is not readable by the worker")
    return problems
