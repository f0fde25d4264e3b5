"""The answer of an agent's start (register and initialize in one local activity) stays small, and
the agent keeps one config, its settings shared.

With a config store that answer used to be the whole stored config, and the agent then ran with
that decoded copy, settings and all, instead of its own config whose settings the worker's agents
share: 7.8 KB more per idle agent (docs/scale.md, "What an idle agent keeps").
"""

from __future__ import annotations

from datetime import UTC, datetime

from activities.agent_activities import AgentActivities
from aiops.contracts.activities import AgentStarted, ConfigProposal, StartAgentCall, StoredConfig
from aiops.contracts.agent import AgentWorkflowInput
from aiops.contracts.config import AgentConfig
from aiops.contracts.shared_settings import SHARED_PARTS, share_settings
from tests.helpers import agent_config
from workflows.agent.lifecycle import adopt_stored


def decoded(config: AgentConfig) -> AgentConfig:
    """The config as it comes out of a payload: objects of its own."""
    return AgentWorkflowInput.model_validate(AgentWorkflowInput(config=config).model_dump(mode="json")).config


def stored(config: AgentConfig, version: int, **changes: object) -> StoredConfig:
    kept = decoded(config).model_copy(update={"version": version, **changes})
    return StoredConfig(
        agent_id=config.id, version=version, config=kept, author="t", comment="", created_at=datetime.now(UTC)
    )


async def start(config: AgentConfig, answer: StoredConfig | None) -> AgentStarted:
    activities = AgentActivities(agent_types=[])  # registers only: no type served here to initialize

    async def register(proposal: ConfigProposal) -> StoredConfig | None:
        assert proposal.config == config
        return answer

    activities.register = register
    return await activities.start_agent(
        StartAgentCall(config=config, proposal=ConfigProposal(config=config, author="t"))
    )


async def test_a_config_stored_as_it_was_comes_back_as_its_version_number_alone() -> None:
    config = agent_config("observer")
    started = await start(config, stored(config, 4))
    assert started.registered and started.stored is None and started.stored_version == 4
    assert "config" not in started.model_dump_json()  # the config is about 1.6 KB of JSON


async def test_a_config_the_store_changed_beyond_its_number_comes_back_whole() -> None:
    config = agent_config("observer")
    started = await start(config, stored(config, 4, name="renamed by hand"))
    assert started.stored is not None and started.stored_version is None
    assert started.stored.config.name == "renamed by hand"


async def test_without_a_store_nothing_comes_back() -> None:
    started = await start(agent_config("observer"), None)
    assert started.registered and started.stored is None and started.stored_version is None


def test_the_agent_keeps_its_own_config_renumbered_with_its_shared_settings() -> None:
    own = share_settings(decoded(agent_config("observer")))
    answer = stored(own, 7).config
    kept = adopt_stored(own, answer)
    assert kept == answer and kept.version == 7 and own.version == 0  # own is not changed in place
    for name in SHARED_PARTS:
        assert getattr(kept, name) is getattr(own, name), name
        assert getattr(answer, name) is not getattr(own, name), name


def test_a_config_the_store_changed_is_adopted_with_its_settings_shared() -> None:
    own = share_settings(decoded(agent_config("observer")))
    answer = stored(own, 7, name="renamed by hand").config
    kept = adopt_stored(own, answer)
    assert kept.name == "renamed by hand" and kept.version == 7
    assert kept.approval is own.approval  # equal settings: the worker's one copy


def test_a_stored_copy_that_would_serialize_otherwise_is_adopted_as_stored() -> None:
    """``1`` and ``True`` are equal in Python, not in JSON: the store's copy is what runs."""
    own = decoded(agent_config("observer", settings={"dry_run": 1}))
    answer = stored(own, 3, settings={"dry_run": True}).config
    assert own.model_copy(update={"version": 3}) == answer  # what a looser check would take as the same
    assert adopt_stored(own, answer).settings["dry_run"] is True


async def test_a_stored_copy_that_would_serialize_otherwise_comes_back_whole() -> None:
    config = agent_config("observer", settings={"dry_run": 1})
    started = await start(config, stored(config, 2, settings={"dry_run": True}))
    assert started.stored is not None and started.stored.config.settings["dry_run"] is True
