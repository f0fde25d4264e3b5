"""Typed settings in BaseAgent: validated once, refused with messages that name each setting."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field, field_validator

from agents import ActionResult, AgentAction, AgentConfig, BaseAgent, EventType, SystemEvent
from agents.settings import AgentSettings, FreeFormSettings
from aiops.contracts.errors import InvalidAgentConfigError
from tests.support.agents_for_tests import TunableAgent


class Root(AgentSettings):
    path: str = Field(description="the folder to clean")
    depth: int = Field(default=1, ge=0, le=5)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path")
        return value


class CleanerSettings(AgentSettings):
    roots: list[Root] = Field(min_length=1, description="folders to clean")
    mode: Literal["delete", "quarantine"] = "delete"
    limit: int = Field(default=10, ge=1, strict=True)


class Cleaner(BaseAgent[CleanerSettings]):
    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True, message=f"limit {self.settings.limit}")

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]

    def _validate_settings_specific(self, settings: CleanerSettings) -> list[str]:
        return ["settings.roots[0].path: /nope does not exist"] if settings.roots[0].path == "/nope" else []


def config(**settings: object) -> AgentConfig:
    return AgentConfig(id="c1", name="c", type="cleaner", settings=settings)


GOOD = {"roots": [{"path": "/srv/tmp"}]}


def test_the_settings_model_comes_from_the_type_parameter() -> None:
    assert Cleaner.settings_model is CleanerSettings
    agent = Cleaner(config(**GOOD))
    assert agent.settings == CleanerSettings(roots=[Root(path="/srv/tmp")])
    assert agent.validate_config(agent.config) == []


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "settings.roots: is required: folders to clean"),
        ({"roots": []}, "settings.roots: List should have at least 1 item"),
        ({"roots": [{"path": "tmp"}]}, "settings.roots[0].path: 'tmp' is not an absolute path"),
        ({"roots": [{}]}, "settings.roots[0].path: is required: the folder to clean"),
        ({"roots": [{"path": "/a", "depth": 9}]}, "settings.roots[0].depth: Input should be less than"),
        (
            {**GOOD, "colour": "blue"},
            "settings.colour: unknown setting for the cleaner agent (known: roots, mode, limit)",
        ),
        (
            {"roots": [{"path": "/a", "glob": "*"}]},
            "settings.roots[0].glob: unknown setting for the cleaner agent (known: path, depth)",
        ),
        ({**GOOD, "mode": "shred"}, "settings.mode: Input should be 'delete' or 'quarantine'"),
        ({**GOOD, "limit": True}, "settings.limit: Input should be a valid integer"),
        ({"roots": [{"path": "/nope"}]}, "settings.roots[0].path: /nope does not exist"),
    ],
)
def test_each_bad_setting_is_named_by_its_path(settings: dict[str, object], problem: str) -> None:
    agent = Cleaner(config(**GOOD))
    problems = agent.validate_config(config(**settings))
    assert any(p.startswith(problem) for p in problems), problems


async def test_bad_settings_refuse_initialize_and_reload_and_keep_the_old_version() -> None:
    broken = Cleaner(config(roots=[]))
    with pytest.raises(InvalidAgentConfigError, match=r"settings.roots: List should have at least 1"):
        await broken.initialize()
    with pytest.raises(InvalidAgentConfigError):
        broken.settings  # noqa: B018 - a hook asking for invalid settings is refused, not retried

    agent = Cleaner(config(**GOOD, limit=3))
    await agent.initialize()
    await agent.start()
    with pytest.raises(InvalidAgentConfigError, match=r"settings\.limit"):
        await agent.reload_config(config(**GOOD, limit=0))
    assert agent.settings.limit == 3
    await agent.reload_config(config(**GOOD, limit=7))
    assert agent.settings.limit == 7 and agent.config.settings["limit"] == 7


def test_an_agent_without_a_model_keeps_free_form_settings() -> None:
    assert TunableAgent.settings_model is FreeFormSettings
    agent = TunableAgent(config(anything={"goes": [1, 2]}, mode="act"))
    assert agent.validate_config(agent.config) == []
    assert agent.settings.model_dump() == {"anything": {"goes": [1, 2]}, "mode": "act"}
    assert agent.validate_config(config(mode="shout")) == ["settings.mode must be 'observe' or 'act'"]


def test_a_type_parameter_that_is_not_a_settings_model_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"BaseAgent\[str\] needs a pydantic model"):

        class Wrong(BaseAgent[str]):  # type: ignore[type-var]
            pass


def test_a_subclass_keeps_its_parents_settings_model() -> None:
    class Stricter(Cleaner):
        pass

    assert Stricter.settings_model is CleanerSettings
    assert Stricter(config(**GOOD)).settings.mode == "delete"
