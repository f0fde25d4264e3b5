"""Agents with equal settings hold one copy of them per worker; nothing else about a config changes."""

from __future__ import annotations

from aiops.contracts.agent import AgentRunState, AgentWorkflowInput
from aiops.contracts.config import AgentConfig, RuntimeSettings
from aiops.contracts.shared_settings import SHARED_PARTS, share_settings
from tests.helpers import agent_config
from workflows.agent.lifecycle import run_state


def decoded(config: AgentConfig) -> AgentConfig:
    """The config as a run decodes it from its input: objects of its own."""
    return AgentWorkflowInput.model_validate(AgentWorkflowInput(config=config).model_dump(mode="json")).config


def test_equal_settings_are_one_object_and_the_config_reads_the_same() -> None:
    a, b = decoded(agent_config("observer")), decoded(agent_config("observer"))
    assert a.approval is not b.approval
    before = (a.model_dump(mode="json"), set(a.model_fields_set))
    share_settings(a)
    share_settings(b)
    for name in SHARED_PARTS:
        assert getattr(a, name) is getattr(b, name), name
    assert (a.model_dump(mode="json"), set(a.model_fields_set)) == before
    assert a.id != b.id  # what is an agent's own stays its own


def test_different_settings_stay_apart() -> None:
    a = share_settings(decoded(agent_config("observer")))
    b = share_settings(decoded(agent_config("observer", runtime=RuntimeSettings(batch_size=7))))
    assert a.runtime is not b.runtime
    assert (a.runtime.batch_size, b.runtime.batch_size) == (100, 7)
    assert a.approval is b.approval


def test_every_run_shares_its_settings_the_first_and_the_carried() -> None:
    first = run_state(AgentWorkflowInput(config=decoded(agent_config("observer"))))
    carried = AgentRunState.model_validate(first.model_dump(mode="json"))
    assert carried.config.approval is not first.config.approval
    later = run_state(AgentWorkflowInput(config=carried.config, carried=carried))
    assert later.run_number == first.run_number + 1
    assert later.config.approval is first.config.approval
