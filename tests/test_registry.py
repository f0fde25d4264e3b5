"""Where agent classes come from: decorators, named modules, entry points; and clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from agents import AgentConfig, AgentFactory, BaseAgent, UnknownAgentTypeError, default_factory
from agents.registry import load_agent_modules


def write_agent_module(folder: Path, module: str, class_name: str, type_name: str | None) -> None:
    decorator = f'@register_agent("{type_name}")' if type_name else ""
    (folder / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from agents import BaseAgent, EventType, ActionResult, register_agent

            {decorator}
            class {class_name}(BaseAgent):
                async def _process_event_specific(self, event):
                    return None

                async def _execute_action_specific(self, action):
                    return ActionResult(success=True)

                def _get_subscribed_event_types(self):
                    return [EventType.ALERT]
            """
        )
    )


def test_unknown_type_names_the_known_ones_and_how_to_load_more() -> None:
    factory = AgentFactory()
    with pytest.raises(UnknownAgentTypeError) as err:
        factory.agent_class("nope")
    assert "no agent type 'nope' is registered" in str(err.value)
    assert "--agent-module" in str(err.value)


def test_two_classes_cannot_claim_one_type() -> None:
    factory = AgentFactory()

    class A(BaseAgent):  # type: ignore[misc]
        pass

    class B(BaseAgent):  # type: ignore[misc]
        pass

    factory.register("dup", A)
    with pytest.raises(ValueError, match="already registered"):
        factory.register("dup", B)


def test_modules_from_the_environment_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_agent_module(tmp_path, "env_named_agents", "EnvAgent", "env_named")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIOPS_AGENT_MODULES", "env_named_agents")
    assert "env_named" in load_agent_modules()
    agent = default_factory.create(AgentConfig(id="e1", name="e", type="env_named"))
    assert type(agent).__name__ == "EnvAgent"


def test_entry_point_group_registers_third_party_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_agent_module(tmp_path, "third_party_agents", "ThirdPartyAgent", None)
    dist = tmp_path / "third_party_agents-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-agents\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[aiops.agents]\nthird_party = third_party_agents:ThirdPartyAgent\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "third_party" in load_agent_modules()
    assert default_factory.agent_class("third_party").__name__ == "ThirdPartyAgent"


def test_a_missing_agent_module_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOPS_AGENT_MODULES", "no_such_module_anywhere")
    with pytest.raises(ModuleNotFoundError):
        load_agent_modules()
    sys.modules.pop("no_such_module_anywhere", None)
