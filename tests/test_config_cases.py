"""Cases inside a config (``AgentConfig.tests``) against the real dev server, worker and PostgreSQL.

They run through the agent type's own decision hook on a worker, in the reconfigure path's
validation activity: a config with a failing case is refused by the reconfigure update (the
client's and the CLI's apply), naming the case, and the agent keeps its version. ``aiops config
test`` runs them locally, with its exit codes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from aiops.cli import app
from aiops.client import AiopsClient, ConfigRefusedError
from aiops.contracts.config import AgentConfig, ConfigCase
from tests.helpers import agent_config, eventually, team
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer

RUNNER = CliRunner()


def case(name: str, risk: str, outcome: str, action: str | None = "run_command") -> ConfigCase:
    return ConfigCase.model_validate(
        {
            "name": name,
            "event": {"id": f"case-{name}", "type": "alert", "source": "host-1", "data": {"risk": risk}},
            "expect": {"action": action, "risk": risk, "outcome": outcome},
        }
    )


GOOD = [case("low runs", "low", "run"), case("medium waits", "medium", "approval")]
BAD = [*GOOD, case("high runs alone", "high", "run")]


def with_cases(config: AgentConfig, cases: list[ConfigCase]) -> AgentConfig:
    return config.model_copy(update={"tests": cases, "settings": {"note": len(cases)}})


@pytest.fixture
def cli(address: str, postgres: PostgresServer, task_queue: str) -> Any:
    env = {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_PROFILE": None,
        "DATABASE_URL": postgres.url,
        "AIOPS_TASK_QUEUE": task_queue,
        "AIOPS_USER": "carol",
        "COLUMNS": "250",
    }

    async def invoke(*args: str) -> Result:
        return await asyncio.to_thread(RUNNER.invoke, app, list(args), env=env)

    return invoke


async def started(aiops: AiopsClient) -> AgentConfig:
    config = agent_config("scripted", approval=team())
    await aiops.agents.start(config, started_by="test")
    await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "running")
    return config


async def test_a_failing_case_is_refused_by_the_update_naming_it(aiops: AiopsClient, worker) -> None:
    config = await started(aiops)
    with pytest.raises(ConfigRefusedError) as refused:
        await aiops.config.apply(with_cases(config, BAD), author="carol")
    message = str(refused.value)
    assert "case 'high runs alone' failed: expected action run_command, risk high, outcome run" in message
    assert "got action run_command, risk high, outcome approval" in message
    assert "low runs" not in message  # only the failing cases are named
    status = await aiops.agents.status(config.id)
    assert status.config_version == 1 and [v.version for v in await aiops.config.history(config.id)] == [1]
    assert not LEDGER["executed"]  # running the cases executed nothing

    applied = await aiops.config.apply(with_cases(config, GOOD), author="carol")
    assert applied.changed and applied.version == 2
    assert (await aiops.agents.status(config.id)).config.tests == GOOD


async def test_the_cli_apply_refuses_and_config_test_exits_by_verdict(
    aiops: AiopsClient, worker, cli: Any, tmp_path: Path
) -> None:
    config = await started(aiops)
    bad, good, none = tmp_path / "bad.json", tmp_path / "good.json", tmp_path / "none.json"
    bad.write_text(with_cases(config, BAD).model_dump_json())
    good.write_text(with_cases(config, GOOD).model_dump_json())
    none.write_text(config.model_dump_json())

    refused = await cli("config", "apply", str(bad))
    assert refused.exit_code == 1 and "case 'high runs alone' failed" in refused.stderr
    assert (await aiops.agents.status(config.id)).config_version == 1

    tested = await cli("config", "test", str(bad))
    assert tested.exit_code == 1, tested.stderr
    assert "FAIL" in tested.stdout and "2 of 3 cases passed" in tested.stdout
    assert "1 case(s) failed: 'high runs alone'" in tested.stderr
    passed = await cli("-o", "json", "config", "test", str(good))
    assert passed.exit_code == 0, passed.stderr
    assert [r["passed"] for r in json.loads(passed.stdout)] == [True, True]
    nothing = await cli("config", "test", str(none))
    assert nothing.exit_code == 2 and "no cases" in nothing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads(good.read_text()), "tests": [{"name": "x", "expect": {}}]}))
    assert (await cli("config", "test", str(broken))).exit_code == 2
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        with_cases(config.model_copy(update={"type": "nobody-has-it"}), GOOD).model_dump_json()
    )
    missing = await cli("config", "test", str(unknown))
    assert missing.exit_code == 1 and "nobody-has-it" in missing.stderr

    applied = await cli("config", "apply", str(good), "--what-if", "--yes")
    assert applied.exit_code == 0, applied.stderr
    assert "what-if for agent" in applied.stdout and "now runs config version 2" in applied.stdout
    no_terminal = await cli("config", "apply", str(good), "--what-if")
    assert no_terminal.exit_code == 2 and "--yes" in no_terminal.stderr
