"""The configuration manager against the real PostgreSQL and dev server.

Apply validates on a worker, stores version N+1 and hot-reloads the running
agent between two events; a refused config changes neither the store nor the
agent; rollback stores a copy of an old version; a version stored by another
process reaches the running agent through LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError

from aiops.client import AgentNotRunningError, AiopsClient, ConfigRefusedError
from aiops.contracts.config import AgentConfig, Integration
from aiops.runtime.config_listener import ConfigListener
from tests.helpers import agent_config, event, eventually
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer
from tests.support.processes import ROOT
from workflows.agent.workflow import AgentWorkflow


def tunable(**settings: object) -> AgentConfig:
    return agent_config("tunable", settings={"mode": "observe", "limit": 10, **settings})


def changed(config: AgentConfig, **settings: object) -> AgentConfig:
    return config.model_copy(update={"settings": {**config.settings, **settings}})


async def started(aiops: AiopsClient, config: AgentConfig) -> None:
    await aiops.agents.start(config, started_by="test")
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")


@pytest_asyncio.fixture
async def listener(postgres: PostgresServer, client: Client) -> AsyncIterator[ConfigListener]:
    running = ConfigListener(postgres.url, client)
    running.start()
    await asyncio.wait_for(running.listening.wait(), 20)
    try:
        yield running
    finally:
        await running.stop()


async def test_an_agent_starts_on_a_stored_version(aiops: AiopsClient, worker) -> None:
    config = tunable()
    await started(aiops, config)
    status = await aiops.agents.status(config.id)
    assert status.config_version == 1
    [v1] = await aiops.config.history(config.id)
    assert (v1.version, v1.author, v1.config.settings) == (1, "test", config.settings)


async def test_apply_stores_the_next_version_and_reloads_the_running_agent(
    aiops: AiopsClient, worker
) -> None:
    config = tunable()
    await started(aiops, config)
    before = event("alert")
    await aiops.events.send(config.id, before)
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1)

    applied = await aiops.config.apply(changed(config, mode="act"), author="alice", comment="start acting")
    assert (applied.version, applied.previous_version, applied.changed) == (2, 1, True)
    assert LEDGER["reloaded"] == ["1->2:act"]
    status = await aiops.agents.status(config.id)
    assert status.config_version == 2 and status.config.settings["mode"] == "act"

    after = event("alert")
    await aiops.events.send(config.id, after)
    record = await aiops.approvals.wait_for_action(aiops.approvals.action_id(config.id, after.id))
    assert record.config_version == 2, "an action records the config version it was decided under"
    assert LEDGER["decided"] == [f"{before.id}@v1:observe", f"{after.id}@v2:act"]
    history = await aiops.config.history(config.id)
    assert [(h.version, h.author, h.comment) for h in history] == [
        (2, "alice", "start acting"),
        (1, "test", "config at start"),
    ]


async def test_a_refused_config_names_every_problem_and_changes_nothing(aiops: AiopsClient, worker) -> None:
    config = tunable()
    await started(aiops, config)
    with pytest.raises(ConfigRefusedError) as refused:
        await aiops.config.apply(changed(config, mode="sometimes", limit=-1), author="alice")
    message = str(refused.value)
    assert "settings.limit must be a positive integer" in message
    assert "settings.mode must be 'observe' or 'act'" in message

    # Shapes the model refuses never reach a worker: the update's validator names each problem.
    raw = config.model_dump(mode="json") | {"automation_level": "sometimes", "colour": "blue"}
    with pytest.raises(WorkflowUpdateFailedError) as invalid:
        await aiops.agents.handle(config.id).execute_update(
            AgentWorkflow.reconfigure, {"config": raw, "author": "mallory"}
        )
    cause = str(invalid.value.cause)
    assert "config.automation_level" in cause and "config.colour" in cause

    with pytest.raises(ConfigRefusedError, match="cannot change type"):
        await aiops.config.apply(config.model_copy(update={"type": "recorder"}), author="alice")

    assert [h.version for h in await aiops.config.history(config.id)] == [1]
    status = await aiops.agents.status(config.id)
    assert status.config_version == 1 and status.config.settings == config.settings
    assert LEDGER["reloaded"] == []
    await aiops.events.send(config.id, event("alert"))  # and the agent still works
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1)


async def test_rollback_stores_a_copy_of_the_old_version_and_applies_it(aiops: AiopsClient, worker) -> None:
    config = tunable()
    await started(aiops, config)
    await aiops.config.apply(changed(config, mode="act", limit=3), author="alice")
    rolled = await aiops.config.rollback(config.id, 1, author="bob")
    assert (rolled.version, rolled.previous_version) == (3, 2)
    assert LEDGER["reloaded"] == ["1->2:act", "2->3:observe"]
    assert await aiops.config.diff(config.id, 1, 3) == []
    diff = {c.path: (c.old, c.new) for c in await aiops.config.diff(config.id, 1, 2)}
    assert diff == {"settings.mode": ("observe", "act"), "settings.limit": (10, 3)}
    [latest, *_] = await aiops.config.history(config.id)
    assert (latest.author, latest.comment) == ("bob", "rollback to version 1")
    status = await aiops.agents.status(config.id)
    assert status.config_version == 3 and status.config.settings == config.settings


async def test_config_for_an_agent_that_is_not_running_says_how_to_start_it(
    aiops: AiopsClient, worker
) -> None:
    with pytest.raises(AgentNotRunningError, match="start it"):
        await aiops.config.apply(tunable(), author="alice")


async def test_a_version_stored_by_another_process_reaches_the_running_agent(
    aiops: AiopsClient, worker, listener: ConfigListener, postgres: PostgresServer
) -> None:
    config = tunable()
    await started(aiops, config)
    newer = changed(config, mode="act").model_dump_json()
    script = (
        "import asyncio, asyncpg, sys\n"
        "from activities.database.config_store import ConfigStore\n"
        "from aiops.contracts.config import AgentConfig\n"
        "async def main():\n"
        "    pool = await asyncpg.create_pool(sys.argv[1])\n"
        "    config = AgentConfig.model_validate_json(sys.argv[2])\n"
        "    stored = await ConfigStore(pool).append(config, 'ops-script')\n"
        "    print(stored.version)\n"
        "asyncio.run(main())\n"
    )
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script, postgres.url, newer],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    status = await eventually(
        lambda: aiops.agents.status(config.id), lambda s: s.config_version == 2, within=10
    )
    assert status.config.settings["mode"] == "act"
    assert LEDGER["reloaded"] == ["1->2:act"]
    # The listener relays the notification again: the agent takes each version once.
    again = await listener.deliver(config.id, 2)
    assert again is not None and again.changed is False
    assert LEDGER["reloaded"] == ["1->2:act"]


async def test_applying_the_running_config_again_stores_nothing(aiops: AiopsClient, worker) -> None:
    config = tunable()
    await started(aiops, config)
    again = await aiops.config.apply(config, author="alice")
    assert (again.version, again.changed) == (1, False)
    assert [h.version for h in await aiops.config.history(config.id)] == [1]


async def test_a_config_postgresql_cannot_store_is_refused_not_retried_for_ever(
    aiops: AiopsClient, worker
) -> None:
    config = tunable()
    await started(aiops, config)
    # A NUL in free-form integration config (a name with one is refused by the model itself).
    nul = [Integration(name="notes", type="custom", config={"note": "nul\x00"})]
    with pytest.raises(ConfigRefusedError, match="PostgreSQL cannot store it"):
        await asyncio.wait_for(
            aiops.config.apply(config.model_copy(update={"integrations": nul}), author="x"), 30
        )
    broken = tunable().model_copy(update={"integrations": nul})
    await aiops.agents.start(broken)
    status = await eventually(lambda: aiops.agents.status(broken.id), lambda s: s.state == "failed")
    assert "PostgreSQL cannot store it" in (status.failure or "")


async def test_a_crashing_validation_hook_refuses_the_config_instead_of_retrying(
    aiops: AiopsClient, worker
) -> None:
    config = tunable()
    await started(aiops, config)
    with pytest.raises(ConfigRefusedError, match="validation failed on this config: KeyError"):
        await asyncio.wait_for(aiops.config.apply(changed(config, explode=True), author="alice"), 30)
    await aiops.events.send(config.id, event("alert"))
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.counters.events_processed == 1)


async def test_rollback_to_a_version_of_another_agent_type_is_refused(aiops: AiopsClient, worker) -> None:
    config = tunable()
    await started(aiops, config)
    await aiops.agents.stop(config.id)
    await eventually(lambda: aiops.agents.ids(), lambda ids: config.id not in ids)
    reborn = config.model_copy(update={"type": "recorder", "settings": {}})
    await aiops.agents.start(reborn)
    await eventually(
        lambda: aiops.agents.status(reborn.id), lambda s: s.state == "running" and s.config_version == 2
    )
    with pytest.raises(ConfigRefusedError, match="stored version 1 is for tunable agent"):
        await aiops.config.rollback(config.id, 1, author="alice")
    assert (await aiops.agents.status(config.id)).config.type == "recorder"


def test_durations_and_numbers_that_cannot_cross_history_are_refused() -> None:
    with pytest.raises(ValueError, match="less than or equal to"):
        tunable().model_validate({**tunable().model_dump(), "runtime": {"decision_timeout_seconds": 1e15}})
    with pytest.raises(ValueError, match="finite"):
        tunable().model_validate({**tunable().model_dump(), "thresholds": {"cpu": float("inf")}})
    with pytest.raises(ValueError, match="not a finite number"):
        tunable().model_validate({**tunable().model_dump(), "settings": {"x": [1.0, float("nan")]}})
