"""The ``postgres`` agent against the test session's real PostgreSQL.

A separate database per test holds a real ``pg_sleep`` query, a session idle in a
transaction, a lock chain and a table with autovacuum off after mass updates. Each
condition is detected, delivered to the agent as events, planned (the plan names the
exact statements and sessions), approved where the policy asks, executed and verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import ValidationError

import agents.builtin  # noqa: F401  (registers the built-in agent types)
from agents import AgentAction, AgentConfig, SystemEvent
from agents.base_agent import BaseAgent
from agents.ledger import ActionLedger
from agents.registry import default_factory
from agents.secrets import resolve_secrets
from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord, ActionStatus
from tests.helpers import agent_config, eventually, team, wait_pending
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

FAST = {"verify_timeout_seconds": 10, "statement_timeout_seconds": 10}


@pytest_asyncio.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh database on the session's server; its URL."""
    name = f"agentpg_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
def dsn_ref(database: str) -> Iterator[str]:
    """The database URL as a secret reference, the only way the agent takes it."""
    name = f"AIOPS_TEST_PG_DSN_{uuid.uuid4().hex[:8].upper()}"
    os.environ[name] = database
    yield f"env:{name}"
    os.environ.pop(name, None)


def pg_config(dsn_ref: str, **settings: Any) -> AgentConfig:
    return agent_config(
        "postgres",
        approval=team(),
        settings={"dsn_secret": dsn_ref, **FAST, **settings},
        retry={"maximum_attempts": 3, "initial_interval_seconds": 0.2},
    )


async def running_agent(config: AgentConfig) -> BaseAgent:
    """The agent as a worker builds it: secrets resolved, initialized, started."""
    agent = default_factory.create(resolve_secrets(config))
    await agent.initialize()
    await agent.start()
    return agent


async def detect_until(agent: BaseAgent, check: str, count: int = 1) -> list[SystemEvent]:
    async def probe() -> list[SystemEvent]:
        return [e for e in await agent.detect() if e.data.get("check") == check]

    return await eventually(probe, lambda found: len(found) >= count, within=20, interval=0.2)


async def detected_and_approved(agent: BaseAgent, check: str) -> AgentAction:
    """The action the agent decides for what it detects for ``check``, its plan approved as is."""
    (found,) = await detect_until(agent, check)
    action = await agent.process_event(found)
    assert action is not None
    plan = await agent.plan(action)
    assert plan is not None
    return action.model_copy(update={"parameters": {**action.parameters, "approved_plan": plan.model_dump()}})


async def pid_of(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await task


async def approve_and_finish(aiops: AiopsClient, action_id: str) -> ActionRecord:
    await wait_pending(aiops, action_id)
    await aiops.approvals.approve(action_id, "alice", "reviewed the sessions in the plan")
    return await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)


async def test_a_long_query_is_detected_planned_approved_cancelled_and_verified(
    aiops: AiopsClient, worker, database: str, dsn_ref: str
) -> None:
    config = pg_config(dsn_ref, long_query_seconds=0.3, checks=["long_queries"])
    agent = await running_agent(config)
    victim = await asyncpg.connect(database, server_settings={"application_name": "reporting"})
    try:
        pid = await pid_of(victim)
        sleeper = asyncio.create_task(victim.fetchval("SELECT pg_sleep(60)"))
        (found,) = await detect_until(agent, "long_queries")
        assert found.id.startswith(f"pg-long-query-{pid}-")
        assert (await agent.detect())[0].id == found.id  # stable for this occurrence: deduplicated

        await aiops.events.send_many(config.id, [found], config=config)
        action_id = aiops.approvals.action_id(config.id, found.id)
        pending = await wait_pending(aiops, action_id)
        assert pending.action.risk_level == "medium"
        assert pending.plan is not None
        assert f"SELECT pg_cancel_backend({pid});" in pending.plan.details
        assert "pg_sleep(60)" in pending.plan.details and "app=reporting" in pending.plan.details

        await aiops.approvals.approve(action_id, "alice", "cancel the report")
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
        assert record.status == ActionStatus.VERIFIED, record.error
        assert record.result is not None and record.result.data["sessions"] == {str(pid): "signalled"}
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(sleeper, 10)
        assert await victim.fetchval("SELECT 1") == 1  # cancelled, not disconnected
    finally:
        await victim.close()


async def test_idle_transaction_lock_chain_and_bloat_are_fixed_end_to_end(
    aiops: AiopsClient, worker, database: str, dsn_ref: str
) -> None:
    setup = await asyncpg.connect(database)
    await setup.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int) WITH (autovacuum_enabled = false);"
        "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 20000) g;"
        "UPDATE accounts SET balance = balance + 1; UPDATE accounts SET balance = balance + 1;"
        "CREATE TABLE jobs (id int PRIMARY KEY, state text); INSERT INTO jobs VALUES (1, 'new');"
        "SELECT pg_stat_force_next_flush();"
    )
    idle = await asyncpg.connect(database, server_settings={"application_name": "forgotten"})
    blocker = await asyncpg.connect(database, server_settings={"application_name": "batch"})
    waiter = await asyncpg.connect(database, server_settings={"application_name": "api"})
    try:
        idle_pid, blocker_pid, waiter_pid = [await pid_of(c) for c in (idle, blocker, waiter)]
        await idle.execute("BEGIN; SELECT count(*) FROM accounts")
        await blocker.execute("BEGIN; UPDATE jobs SET state = 'running' WHERE id = 1")
        waiting = asyncio.create_task(waiter.execute("UPDATE jobs SET state = 'done' WHERE id = 1"))

        config = pg_config(
            dsn_ref,
            idle_in_transaction_seconds=0.3,
            lock_wait_seconds=0,
            min_dead_tuples=1000,
            checks=["idle_in_transaction", "lock_chains", "bloat"],
        )
        agent = await running_agent(config)
        (chain,) = await detect_until(agent, "lock_chains")
        assert chain.data["blocker"]["pid"] == blocker_pid and chain.data["waiting_pids"] == [waiter_pid]
        (bloat,) = await detect_until(agent, "bloat")
        assert bloat.data["tables"][0]["table"] == "public.accounts"
        assert bloat.data["tables"][0]["dead_tuples"] >= 20000
        idle_events = await detect_until(agent, "idle_in_transaction", 2)  # the blocker idles too
        (forgotten,) = [e for e in idle_events if e.data["sessions"][0]["pid"] == idle_pid]

        await aiops.events.send_many(config.id, [forgotten, chain, bloat], config=config)
        ids = {e.data["check"]: aiops.approvals.action_id(config.id, e.id) for e in (forgotten, chain, bloat)}

        # VACUUM is low risk: semi_auto runs it without asking, and verify sees the dead tuples gone.
        vacuumed = await asyncio.wait_for(aiops.approvals.wait_for_action(ids["bloat"]), 60)
        assert vacuumed.status == ActionStatus.VERIFIED, vacuumed.error
        assert vacuumed.plan is not None and "VACUUM (ANALYZE) public.accounts;" in vacuumed.plan.details
        assert vacuumed.approvals == []
        dead = await setup.fetchval("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'accounts'")
        assert dead < 1000

        # Terminating the root blocker is high risk: it waits for a person, then the waiter proceeds.
        pending = await wait_pending(aiops, ids["lock_chains"])
        assert pending.action.risk_level == "high"
        assert pending.plan is not None
        assert f"SELECT pg_terminate_backend({blocker_pid});" in pending.plan.details
        assert f"unblocks pid(s) [{waiter_pid}]" in pending.plan.details
        assert not waiting.done()
        record = await approve_and_finish(aiops, ids["lock_chains"])
        assert record.status == ActionStatus.VERIFIED, record.error
        assert await asyncio.wait_for(waiting, 10) == "UPDATE 1"

        record = await approve_and_finish(aiops, ids["idle_in_transaction"])
        assert record.status == ActionStatus.VERIFIED, record.error
        alive = await setup.fetch(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])", [idle_pid, blocker_pid]
        )
        assert alive == []
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
            await idle.fetchval("SELECT 1")
    finally:
        for c in (idle, blocker, waiter, setup):
            c.terminate()


async def test_a_retried_execute_never_hits_the_next_query_of_the_same_session(
    database: str, dsn_ref: str
) -> None:
    """A repeat of an executed action answers from the ledger, and a statement pinned to an
    occurrence matches nothing once the same backend (same pid) runs a new query."""
    agent = await running_agent(pg_config(dsn_ref, long_query_seconds=0.2, checks=["long_queries"]))
    victim = await asyncpg.connect(database)
    try:
        first = asyncio.create_task(victim.fetchval("SELECT pg_sleep(60)"))
        approved = await detected_and_approved(agent, "long_queries")
        done = await agent.execute_action(approved)
        assert list(done.data["sessions"].values()) == ["signalled"]
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(first, 10)

        second = asyncio.create_task(victim.fetchval("SELECT pg_sleep(60)"))
        await detect_until(agent, "long_queries")  # the same pid runs a new long query
        again = await agent.execute_action(approved)  # a retry of the same action: its recorded answer
        assert again == done
        # Another action carrying the same approved plan (no ledger record to answer from) reaches
        # the server, and its pinned occurrence no longer matches: the new query is left alone.
        other = approved.model_copy(update={"id": "pg-other-action", "idempotency_key": None})
        elsewhere = await agent.execute_action(other)
        assert list(elsewhere.data["sessions"].values()) == [
            "already gone (ended, or no longer the same occurrence)"
        ]
        await asyncio.sleep(0)
        assert not second.done()
        assert await agent.verify(approved, again)
        await stop(second)
    finally:
        victim.terminate()


async def test_a_retry_after_a_crash_resumes_from_the_ledger(
    database: str, dsn_ref: str, tmp_path: Path
) -> None:
    """A crashed attempt recorded a step for the session and died before its result: the retry
    takes that step's outcome from the ledger instead of running the statement again (here the
    recorded outcome differs from what the server would now answer, which tells them apart)."""
    ledger = tmp_path / "ledger"
    config = pg_config(dsn_ref, long_query_seconds=0.2, checks=["long_queries"], state_dir=str(ledger))
    agent = await running_agent(config)
    victim = await asyncpg.connect(database)
    try:
        pid = await pid_of(victim)
        sleeper = asyncio.create_task(victim.fetchval("SELECT pg_sleep(60)"))
        approved = await detected_and_approved(agent, "long_queries")
        (change,) = approved.parameters["approved_plan"]["changes"]
        token = change.split("-- ")[1].split("]")[0] + "]"
        crashed = ActionLedger(ledger).lookup(approved)
        crashed.intend({"check": "long_queries"})
        crashed.step("session", {"token": token, "name": str(pid), "outcome": "recorded by the crashed try"})

        result = await agent.execute_action(approved)
        assert result.data["sessions"] == {str(pid): "recorded by the crashed try"}
        assert not sleeper.done()
        assert ActionLedger(ledger).lookup(approved).done_result() == result
        await stop(sleeper)
    finally:
        victim.terminate()


async def test_an_outside_alert_and_connection_saturation_become_actions(database: str, dsn_ref: str) -> None:
    config = pg_config(
        dsn_ref, connection_saturation_ratio=0.0, idle_session_seconds=0, long_query_seconds=0.2
    )
    agent = await running_agent(config)
    idlers = [
        await asyncpg.connect(database, server_settings={"application_name": "pooler"}) for _ in range(2)
    ]
    victim = await asyncpg.connect(database)
    try:
        victim_pid = await pid_of(victim)
        pids = {await pid_of(c) for c in idlers} | {victim_pid}
        (saturated,) = await detect_until(agent, "connections")
        assert saturated.data["usage"]["used"] >= 3
        action = await agent.process_event(saturated)
        assert action is not None and action.risk_level == "high"
        plan = await agent.plan(action)
        assert plan is not None and plan.summary.startswith("pg_terminate_backend on")
        assert {int(c.split("(")[1].split(")")[0]) for c in plan.changes} <= pids

        # An Alertmanager alert names the condition by its labels; the plan finds the sessions now.
        sleeper = asyncio.create_task(victim.fetchval("SELECT pg_sleep(60)"))
        await detect_until(agent, "long_queries")
        alert = SystemEvent(
            id="am:abc:firing:1", type="alert", source="db-1", severity="high",
            data={"status": "firing",
                  "labels": {"alertname": "PostgresLongRunningQuery", "instance": "db-1"}},
        )  # fmt: skip
        from_alert = await agent.process_event(alert)
        assert from_alert is not None and from_alert.parameters["sessions"] == []
        plan = await agent.plan(from_alert)
        assert plan is not None and f"pg_cancel_backend({victim_pid})" in plan.details
        assert "pg_sleep(60)" in plan.details
        ignored = alert.model_copy(update={"data": {"labels": {"alertname": "DiskFull"}}})
        assert await agent.process_event(ignored) is None
        await stop(sleeper)
    finally:
        for c in (*idlers, victim):
            c.terminate()


async def test_health_check_and_a_plan_refused_without_an_approved_plan(dsn_ref: str) -> None:
    agent = await running_agent(pg_config(dsn_ref))
    assert (await agent.health_check()).checks == {"postgres reachable": True, "may signal backends": True}
    blind = AgentAction(
        id="a1", agent_id=agent.agent_id, type="run_command", description="x",
        parameters={"check": "long_queries", "operation": "cancel", "sessions": []},
    )  # fmt: skip
    with pytest.raises(Exception, match="no approved plan"):
        await agent.execute_action(blind)

    os.environ["AIOPS_TEST_PG_DOWN"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    down = await running_agent(pg_config("env:AIOPS_TEST_PG_DOWN", connect_timeout_seconds=2))
    assert (await down.health_check()).checks == {"postgres reachable": False}


def test_bad_settings_are_refused_with_clear_messages() -> None:
    agent = default_factory.agent_class("postgres")
    config = agent_config(
        "postgres",
        settings={
            "dsn_secret": "env:PG_DSN",
            "long_query_seconds": -1,
            "checks": ["long_queries", "everything"],
            "long_query_action": "kill",
            "risk": {"bloat": "tiny", "nope": "low"},
            "max_sessions_per_action": 2.5,
            "vacuum_analyze": "yes",
            "dsn": "typo",
        },
    )
    problems = agent(config).validate_config(config)
    text = "\n".join(problems)
    assert "settings.dsn: unknown setting for the postgres agent (known: dsn_secret," in text
    assert "settings.long_query_seconds: Input should be greater than or equal to 0" in text
    assert "settings.checks[1]: Input should be 'long_queries', 'idle_in_transaction'," in text
    assert "settings.long_query_action: Input should be 'cancel' or 'terminate'" in text
    assert "settings.risk.bloat: Input should be 'low', 'medium', 'high' or 'critical'" in text
    assert "settings.risk.nope: unknown setting for the postgres agent (known: long_queries," in text
    assert "settings.max_sessions_per_action: Input should be a valid integer" in text
    assert "settings.vacuum_analyze: Input should be a valid boolean" in text
    assert len(problems) == 8

    missing = agent_config("postgres")
    assert agent(missing).validate_config(missing) == [
        'settings.dsn_secret: is required: a reference to the PostgreSQL URL, e.g. "env:PG_DSN"'
    ]
    # A literal DSN (with its password) never gets into a config at all.
    with pytest.raises(ValidationError, match="a secret must be a reference"):
        agent_config("postgres", settings={"dsn_secret": "postgresql://app:hunter2@db/prod"})
    # Resolved to something that is not a PostgreSQL URL: refused without echoing it.
    resolved = agent_config("postgres").model_copy(update={"settings": {"dsn_secret": "hunter2"}})
    (problem,) = agent(resolved).validate_config(resolved)
    assert "must resolve to a PostgreSQL URL" in problem and "hunter2" not in problem
