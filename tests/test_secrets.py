"""Secrets in config are references, resolved on the worker only.

A literal secret is refused with the reference to write instead; a planted
secret, used by a real action, appears nowhere in Temporal history or in any
database table.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from pydantic import ValidationError
from temporalio.client import Client

from agents.secrets import SecretUnavailableError, resolve_secrets
from aiops.client import AiopsClient, ConfigRefusedError
from aiops.contracts.config import Integration
from tests.helpers import agent_config, event, eventually
from tests.support.agents_for_tests import LEDGER


def vault(token: str) -> Integration:
    return Integration(name="vault", type="hashicorp_vault", config={"url": "https://vault", "token": token})


def test_a_literal_secret_is_refused_with_the_reference_to_write() -> None:
    with pytest.raises(ValidationError) as refused:
        agent_config(
            "tunable",
            integrations=[{"name": "vault", "type": "hashicorp_vault", "config": {"token": "hunter2"}}],
            settings={"db": {"password": "hunter3"}, "region": "eu"},
        )
    message = str(refused.value)
    assert "integration 'vault' config.token: a secret must be a reference" in message
    assert "settings.db.password: a secret must be a reference" in message
    assert '"env:TOKEN"' in message and '"file:/run/secrets/token"' in message
    assert "hunter2" not in message and "hunter3" not in message


def test_references_resolve_from_the_environment_and_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIOPS_TEST_VAULT_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\n")
    config = agent_config(
        "tunable",
        integrations=[vault("env:AIOPS_TEST_VAULT_TOKEN")],
        settings={"backup": {"api_key": f"file:{tmp_path / 'token'}"}},
    )
    resolved = resolve_secrets(config)
    assert resolved.integrations[0].config["token"] == "from-env"
    assert resolved.settings["backup"]["api_key"] == "from-file"
    assert config.integrations[0].config["token"] == "env:AIOPS_TEST_VAULT_TOKEN", "the original keeps refs"
    missing = agent_config("tunable", integrations=[vault("env:AIOPS_NOT_SET_ANYWHERE")])
    with pytest.raises(SecretUnavailableError, match="AIOPS_NOT_SET_ANYWHERE is not set"):
        resolve_secrets(missing)


async def test_an_unresolvable_reference_fails_the_agent_with_the_variable_named(
    aiops: AiopsClient, worker
) -> None:
    config = agent_config("tunable", integrations=[vault("env:AIOPS_NOT_SET_ANYWHERE")])
    with pytest.raises(ConfigRefusedError, match="AIOPS_NOT_SET_ANYWHERE is not set"):
        await aiops.agents.start(config)  # refused up front, nothing started
    assert not await aiops.agents.is_running(config.id)
    await aiops.agents.start(config, require_worker=False)  # past the client's check: the worker's own
    status = await eventually(lambda: aiops.agents.status(config.id), lambda s: s.state == "failed")
    assert "environment variable AIOPS_NOT_SET_ANYWHERE is not set" in (status.failure or "")


async def test_a_planted_secret_appears_nowhere_in_history_or_the_database(
    aiops: AiopsClient, worker, client: Client, pool: asyncpg.Pool, monkeypatch
) -> None:
    secret = f"planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIOPS_PLANTED_TOKEN", secret)
    config = agent_config(
        "tunable", integrations=[vault("env:AIOPS_PLANTED_TOKEN")], settings={"mode": "act", "limit": 5}
    )
    await aiops.agents.start(config)
    e = event("alert")
    await aiops.events.send(config.id, e)
    action_id = aiops.approvals.action_id(config.id, e.id)
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.status == "succeeded"
    assert LEDGER["token_seen"] == [hashlib.sha256(secret.encode()).hexdigest()], "the agent got the secret"
    await aiops.config.apply(
        config.model_copy(update={"settings": {"mode": "act", "limit": 6}}), author="alice"
    )

    for workflow_id in (f"agent-{config.id}", action_id):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        raw = b"".join(e.SerializeToString() for e in history.events)  # payload bytes, not base64
        assert b"env:AIOPS_PLANTED_TOKEN" in raw, "the reference is there (the search is real)"
        assert secret.encode() not in raw

    tables = [
        r["tablename"] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    ]
    assert {"agent_config_versions", "audit_log"} <= set(tables)
    seen_reference = False
    for table in tables:
        dump = await pool.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")
        assert secret not in dump, f"the secret leaked into {table}"
        seen_reference |= "env:AIOPS_PLANTED_TOKEN" in dump
    assert seen_reference
    assert os.environ["AIOPS_PLANTED_TOKEN"] == secret
