"""The terraform agent's settings: which root module, how Terraform runs there, where plans live."""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import Field, JsonValue, StrictBool, field_validator

from agents.builtin.common import AbsolutePath, OwnFolder
from agents.settings import AgentSettings
from aiops.contracts.models import RiskLevel

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class TerraformSettings(AgentSettings):
    """See docs/agents/terraform.md for each setting."""

    working_dir: AbsolutePath = Field(description="the absolute path of the Terraform root module")
    plan_dir: OwnFolder | None = Field(
        default=None, description="saved plans and the action ledger; default <working_dir>/.aiops-plans"
    )
    variables: dict[str, JsonValue] = Field(
        default_factory=dict, description="-var values, written to a 0600 var file per run"
    )
    var_files: list[Annotated[str, Field(strict=True, min_length=1)]] = Field(
        default_factory=list, description="extra -var-files, relative to working_dir or absolute"
    )
    init: StrictBool = True
    lock_timeout_seconds: float = Field(default=60, strict=True, ge=0, le=3600)
    command_timeout_seconds: float = Field(default=900, strict=True, ge=1, le=86400)
    risk_level: RiskLevel | None = Field(
        default=None, description="fixes every action's risk; default: high when anything is destroyed"
    )
    max_plan_chars: int = Field(default=60000, strict=True, ge=1000, le=1_000_000)

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, variables: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for name, value in variables.items():
            if not VARIABLE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Terraform variable name")
            if value is None:
                raise ValueError(f"{name!r} has no value (null); leave it out to use the module's default")
        return variables

    @property
    def plans(self) -> str:
        """The folder of saved plans and the ledger."""
        return self.plan_dir or os.path.join(self.working_dir, ".aiops-plans")

    def var_file_paths(self) -> list[str]:
        """The configured var files as absolute paths."""
        return [f if os.path.isabs(f) else os.path.join(self.working_dir, f) for f in self.var_files]
