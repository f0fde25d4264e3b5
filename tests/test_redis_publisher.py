"""Redis Streams out (``aiops publish redis``): a real action's audit rows published once each, in order,
across a publisher restart, against the session's PostgreSQL and a real ``redis-server``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from aiops.client import AiopsClient
from aiops.contracts.action import ActionStatus
from aiops.sources.redis_publisher import AuditPublisher
from aiops.sources.redis_settings import RedisPublishSettings
from tests.helpers import agent_config, eventually, start_pending_action, team
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def publish_once(url: str, stream: str, agent_id: str, database_url: str) -> str:
    """``aiops publish redis --once`` as its own process: a publisher started afresh."""
    command = [sys.executable, "-m", "aiops.cli", "publish", "redis", "--once", "--url", url]
    done = subprocess.run(
        [*command, "--stream", stream, "--agent", agent_id],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
async def test_an_actions_life_is_published_once_each_in_order_across_a_publisher_restart(
    aiops: AiopsClient,
    worker,
    pool: asyncpg.Pool,
    postgres: PostgresServer,
    redis: Redis,
    redis_server: RedisServer,
) -> None:
    """Rows published while the action waits for approval, then (by a new publisher process) the rest
    once it is approved, executed and verified: the stream holds each of its rows once, in seq order,
    with the action id and step; a third run publishes nothing."""
    config = agent_config("scripted", approval=team())
    _, action_id, _ = await start_pending_action(aiops, config, "high", requested_by="dave")
    stream = f"audit-{uuid.uuid4().hex[:6]}"
    settings = RedisPublishSettings(url=redis_server.url, stream=stream, agents=[config.id])
    first = AuditPublisher(settings, redis, pool)
    while await first.publish_once():
        pass
    early = await redis.xlen(stream)
    assert early >= 1  # at least the decision that asked for approval

    await aiops.approvals.approve(action_id, "bob", "lgtm")
    record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 60)
    assert record.status == ActionStatus.VERIFIED
    rows = await eventually(
        lambda: aiops.audit.rows(action_id=action_id), lambda rs: rs[-1].step == "action_finished"
    )
    said = await asyncio.to_thread(publish_once, redis_server.url, stream, config.id, postgres.url)
    assert f"published {len(rows) - early} rows" in said
    again = await asyncio.to_thread(publish_once, redis_server.url, stream, config.id, postgres.url)
    assert "published 0 rows" in again

    entries = await redis.xrange(stream)
    published = [(int(f[b"seq"]), f[b"action_id"].decode(), f[b"step"].decode()) for _, f in entries]
    wanted = [r for r in await aiops.audit.rows(agent_id=config.id) if r.action_id is not None]
    assert published == [(r.seq, r.action_id, r.step) for r in wanted]  # once each, in order
    steps = [step for _, _, step in published]
    for step in ("decision", "approval", "execution_result", "verification", "action_finished"):
        assert step in steps, steps
    assert all(a == action_id for _, a, _ in published)


@pytest.mark.slow
async def test_two_publishers_racing_on_one_stream_publish_each_row_once(
    aiops: AiopsClient, worker, pool: asyncpg.Pool, redis: Redis, redis_server: RedisServer
) -> None:
    """Two publishers (one started by mistake beside the other) run passes at once, with every step:
    the position check and the XADD are one atomic script, so each row is in the stream once."""
    config = agent_config("scripted", approval=team())
    await start_pending_action(aiops, config, "high", requested_by="dave")
    stream = f"race-{uuid.uuid4().hex[:6]}"
    settings = RedisPublishSettings(
        url=redis_server.url, stream=stream, agents=[config.id], all_steps=True, batch=1
    )
    one, two = AuditPublisher(settings, redis, pool), AuditPublisher(settings, redis, pool)

    async def drain(publisher: AuditPublisher) -> None:
        while await publisher.publish_once():
            pass

    await asyncio.gather(drain(one), drain(two), drain(one))
    rows = await aiops.audit.rows(agent_id=config.id)
    seqs = [int(f[b"seq"]) for _, f in await redis.xrange(stream)]
    assert len(seqs) >= 2 and seqs == [r.seq for r in rows][: len(seqs)]  # in order, none twice, none skipped
    assert len(set(seqs)) == len(seqs) and one.stats.published + two.stats.published == len(seqs)
