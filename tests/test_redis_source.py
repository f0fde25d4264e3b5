"""Redis Streams in (``aiops source redis``) against a real Debian ``redis-server``, the session's
Temporal and a worker: entries become events decided once, refused ones land in the dead-letter
stream with their reason, a consumer killed midway leaves its entries to another, and a Redis
restart loses nothing. The pure checks of an entry are in test_redis_entries.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from aiops.client import AiopsClient
from aiops.contracts.config import RuntimeSettings
from aiops.gateway.delivery import Connector, Deliverer
from aiops.gateway.reload import ConfigHolder
from aiops.sources.redis_settings import RedisSourceSettings
from aiops.sources.redis_source import RedisSource
from tests.helpers import agent_config, eventually
from tests.support.agents_for_tests import LEDGER
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


def write_routes(path: Path, agents: list[str]) -> Path:
    """A gateway config whose routes send ``shard=<i>`` events to the i-th agent."""
    routes = [
        {"name": f"shard-{i}", "matchers": [f'shard="{i}"'], "agents": [a]} for i, a in enumerate(agents)
    ]
    document = {
        "version": 1,
        "sources": {"redis": {"auth": {"type": "none"}}},
        "routes": routes,
        "delivery": {"attempts": 3, "timeout_seconds": 5},
    }
    path.write_text(json.dumps(document))
    return path


def entry(event_id: str, shard: int, **extra: Any) -> dict[str, str]:
    event = {
        "id": event_id,
        "type": "infrastructure_drift",
        "source": f"bus-{event_id}",
        "severity": "low",
        "data": {"labels": {"shard": str(shard)}, **extra},
    }
    return {"event": json.dumps(event)}


async def start_recorders(aiops: AiopsClient, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        config = agent_config("recorder", runtime=RuntimeSettings(dedup_window=8000, max_queue=20000))
        await aiops.agents.start(config)
        ids.append(config.id)
    for agent_id in ids:
        await eventually(lambda a=agent_id: aiops.agents.status(a), lambda s: s.state == "running")
    return ids


async def processed(aiops: AiopsClient, agents: list[str]) -> int:
    return sum([(await aiops.agents.status(a)).counters.events_processed for a in agents])


def settings(url: str, stream: str, **overrides: Any) -> RedisSourceSettings:
    return RedisSourceSettings(url=url, streams=[stream], consumer=f"c-{uuid.uuid4().hex[:6]}", **overrides)


async def running_source(aiops: AiopsClient, routes: Path, config: RedisSourceSettings) -> RedisSource:
    from aiops.sources.redis_source import open_redis

    return RedisSource(
        config, open_redis(config.url, config.block_ms), ConfigHolder(routes), Deliverer(Connector.of(aiops))
    )


@pytest.mark.slow
async def test_hostile_entries_are_dead_lettered_with_reasons_and_valid_ones_around_them_decided(
    aiops: AiopsClient, worker, redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Oversized, not JSON, no event field, no id, not an event, too many fields, no route: each in the
    dead-letter stream with its reason and acknowledged; the valid entries between them decided once."""
    (agent,) = await start_recorders(aiops, 1)
    stream = f"in-{uuid.uuid4().hex[:6]}"
    config = settings(redis_server.url, stream, dead_letter_stream=f"{stream}:dead", max_fields=4)
    valid = [f"ok-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    hostile: list[tuple[dict[str, str], str]] = [
        ({"event": "x" * 40_000}, "over the limit of 32000"),
        ({"event": "{not json"}, "the event is not JSON"),
        ({"payload": "{}"}, "missing field 'event'"),
        ({"event": json.dumps({"type": "alert", "source": "s"})}, "id: field required"),
        ({"event": json.dumps({"id": "e1", "type": "nope", "source": "s"})}, "invalid event"),
        ({"event": "[1]"}, "an event must be a JSON object"),
        ({**entry("wide", 0), "a": "1", "b": "2", "c": "3", "d": "4"}, "5 fields, over the limit of 4"),
        (entry(f"lost-{uuid.uuid4().hex[:6]}", 7), "no route takes the event"),
    ]
    await redis.xadd(stream, entry(valid[0], 0))
    for fields, _ in hostile[:4]:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    await redis.xadd(stream, entry(valid[1], 0))
    for fields, _ in hostile[4:]:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    await redis.xadd(stream, entry(valid[2], 0))

    source = await running_source(aiops, write_routes(tmp_path / "routes.json", [agent]), config)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: processed(aiops, [agent]), lambda n: n >= 3)
        await eventually(lambda: redis.xlen(f"{stream}:dead"), lambda n: n >= len(hostile))
        await eventually(lambda: redis.xpending(stream, "aiops"), lambda p: p["pending"] == 0)
    finally:
        source.stop()
        await task
        await source.redis.aclose()
    assert sorted(LEDGER["decided"]) == sorted(valid)
    dead = await redis.xrange(f"{stream}:dead")
    assert len(dead) == len(hostile)
    for (_, fields), (_, why) in zip(dead, hostile, strict=True):
        assert why in fields[b"reason"].decode(), fields[b"reason"]
        assert fields[b"stream"].decode() == stream
    assert dead[0][1][b"truncated"] == b"1"  # the oversized entry is kept cut, not whole
    assert source.stats.dead_lettered == len(hostile) and source.stats.acked == 3


def start_consumer(
    name: str, routes: Path, stream: str, url: str, address: str, task_queue: str, log: Path
) -> subprocess.Popen[bytes]:
    """``aiops source redis`` as its own process; returns once it reads."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiops.cli",
            "--task-queue",
            task_queue,
            "source",
            "redis",
            "--routes",
            str(routes),
            "--stream",
            stream,
            "--url",
            url,
            "--consumer",
            name,
            "--batch",
            "500",
            "--claim-idle",
            "2",
            "--claim-every",
            "0.5",
            "--log-format",
            "text",
        ],
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 30
    while "redis source ready" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the redis source did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return process


async def holding(redis: Redis, stream: str) -> dict[str, int]:
    """Entries each consumer read and did not acknowledge yet."""
    pending: Any = await redis.xpending(stream, "aiops")
    return {c["name"].decode(): c["pending"] for c in pending["consumers"]}


@pytest.mark.slow
async def test_ten_thousand_entries_through_two_consumers_one_killed_are_each_decided_once(
    aiops: AiopsClient,
    worker,
    redis: Redis,
    redis_server: RedisServer,
    address: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    """Two `aiops source redis` processes share a group; one is SIGKILLed midway with entries pending.
    The other claims them once idle: every entry is decided exactly once and nothing stays pending."""
    agents = await start_recorders(aiops, 4)
    routes = write_routes(tmp_path / "routes.json", agents)
    stream, total = f"bulk-{uuid.uuid4().hex[:6]}", 10_000
    ids = [f"b-{i}" for i in range(total)]
    half = total * 4 // 5  # most of it up front, so the consumers are busy when c1 is killed
    async with redis.pipeline(transaction=False) as pipe:
        for i, event_id in enumerate(ids[:half]):
            pipe.xadd(stream, entry(event_id, i % 4))
        await pipe.execute()
    logs = [tmp_path / "c1.log", tmp_path / "c2.log"]
    c1 = await asyncio.to_thread(
        start_consumer, "c1", routes, stream, redis_server.url, address, task_queue, logs[0]
    )
    c2 = await asyncio.to_thread(
        start_consumer, "c2", routes, stream, redis_server.url, address, task_queue, logs[1]
    )
    try:
        # Kill c1 while it holds a read (between two reads it holds nothing): poll for that moment
        # from the start, since two consumers can take thousands of entries in a second or two.
        await eventually(
            lambda: holding(redis, stream), lambda h: h.get("c1", 0) > 0, within=60, interval=0.001
        )
        c1.send_signal(signal.SIGKILL)
        c1.wait()
        held = await holding(redis, stream)  # c1's, as it died (c2 claims them only after 2s idle)
        async with redis.pipeline(transaction=False) as pipe:
            for i, event_id in enumerate(ids[half:], start=half):
                pipe.xadd(stream, entry(event_id, i % 4))
            await pipe.execute()
        await eventually(lambda: processed(aiops, agents), lambda n: n >= total, within=120)
        await eventually(lambda: redis.xpending(stream, "aiops"), lambda p: p["pending"] == 0, within=30)
        statuses = [await aiops.agents.status(a) for a in agents]
    finally:
        for process in (c1, c2):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    assert held.get("c1", 0) > 0, f"c1 held nothing when killed (the test proved nothing): {held}"
    assert sum(s.counters.events_processed for s in statuses) == total
    assert all(s.counters.events_processed == total // 4 for s in statuses)
    decided = Counter(LEDGER["decided"])
    assert set(decided) == set(ids) and max(decided.values()) == 1
    assert "claimed" in logs[1].read_text()  # c2 took over c1's entries


@pytest.mark.slow
async def test_a_redis_restart_mid_stream_loses_nothing(
    aiops: AiopsClient, worker, redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis stops (until the source has seen it gone) and starts again while the source reads: the
    source waits, reconnects and goes on;
    entries written before and after are all decided once, nothing stays pending."""
    (agent,) = await start_recorders(aiops, 1)
    stream = f"restart-{uuid.uuid4().hex[:6]}"
    source = await running_source(
        aiops, write_routes(tmp_path / "routes.json", [agent]), settings(redis_server.url, stream, batch=50)
    )
    task = asyncio.create_task(source.run())
    ids = [f"r-{uuid.uuid4().hex[:6]}-{i}" for i in range(600)]
    try:
        for event_id in ids[:300]:
            await redis.xadd(stream, entry(event_id, 0))
        await eventually(lambda: processed(aiops, [agent]), lambda n: n >= 50)
        before: Any = await redis.info("server")
        await asyncio.to_thread(redis_server.stop)  # down until the source has noticed, then back
        await eventually(lambda: asyncio.sleep(0, source.stats), lambda s: s.reconnects >= 1)
        await asyncio.to_thread(redis_server.start)
        async with Redis.from_url(redis_server.url) as again:
            after: Any = await again.info("server")
            for event_id in ids[300:]:
                await again.xadd(stream, entry(event_id, 0))
            await eventually(lambda: processed(aiops, [agent]), lambda n: n >= len(ids), within=60)
            await eventually(lambda: again.xpending(stream, "aiops"), lambda p: p["pending"] == 0)
    finally:
        source.stop()
        await task
        await source.redis.aclose()
    assert before["run_id"] != after["run_id"]  # another server process: every connection was cut
    assert sorted(LEDGER["decided"]) == sorted(ids)


@pytest.mark.slow
async def test_agents_pushing_back_make_the_source_read_less_and_ack_nothing_until_they_take_it(
    aiops: AiopsClient, worker, redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The routed agent is not running: nothing is acknowledged or dead-lettered, the read size falls
    to one entry, and the entries stay pending (held by this consumer). Once the agent starts, every
    entry is decided once and acknowledged, and the read size grows back."""
    config = agent_config("recorder")
    stream = f"push-{uuid.uuid4().hex[:6]}"
    settings_ = settings(
        redis_server.url, stream, batch=64, pushback_pause_seconds=0.05, pushback_max_pause_seconds=0.2
    )
    ids = [f"p-{uuid.uuid4().hex[:6]}-{i}" for i in range(100)]
    for event_id in ids:
        await redis.xadd(stream, entry(event_id, 0))
    source = await running_source(aiops, write_routes(tmp_path / "routes.json", [config.id]), settings_)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: asyncio.sleep(0, source.stats), lambda s: s.pushbacks >= 8 and s.count == 1)
        pending: Any = await redis.xpending(stream, "aiops")
        assert pending["pending"] == 64  # the first read, held: not acked, not dropped, nothing more read
        assert source.stats.acked == 0 and source.stats.dead_lettered == 0
        assert "not running" in source.stats.last_pushback
        await aiops.agents.start(config)
        await eventually(lambda: processed(aiops, [config.id]), lambda n: n >= len(ids))
        await eventually(lambda: redis.xpending(stream, "aiops"), lambda p: p["pending"] == 0)
    finally:
        source.stop()
        await task
        await source.redis.aclose()
    assert sorted(LEDGER["decided"]) == sorted(ids)
    assert source.stats.acked == len(ids) and source.stats.count > 1


@pytest.mark.slow
async def test_a_consumer_restarted_under_its_name_delivers_its_own_pending_entries_first(
    aiops: AiopsClient, worker, redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A consumer stops while its agent pushes back, holding its read; started again under the same
    name (with a claim idle time of an hour, so no claim helps), it delivers those entries at once."""
    config = agent_config("recorder")
    stream = f"again-{uuid.uuid4().hex[:6]}"
    routes = write_routes(tmp_path / "routes.json", [config.id])
    first = settings(redis_server.url, stream, claim_idle_seconds=3600, pushback_pause_seconds=0.05)
    ids = [f"a-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    for event_id in ids:
        await redis.xadd(stream, entry(event_id, 0))
    source = await running_source(aiops, routes, first)
    task = asyncio.create_task(source.run())
    await eventually(lambda: asyncio.sleep(0, source.stats), lambda s: s.pushbacks >= 1)
    source.stop()
    await task
    await source.redis.aclose()
    pending: Any = await redis.xpending(stream, "aiops")
    assert pending["pending"] == len(ids)  # held, not acknowledged, by this consumer
    await aiops.agents.start(config)
    again = await running_source(aiops, routes, first)
    task = asyncio.create_task(again.run())
    try:
        await eventually(lambda: redis.xpending(stream, "aiops"), lambda p: p["pending"] == 0)
        await eventually(lambda: processed(aiops, [config.id]), lambda n: n >= len(ids))
    finally:
        again.stop()
        await task
        await again.redis.aclose()
    assert sorted(LEDGER["decided"]) == sorted(ids)
    assert again.stats.claimed == 0  # its own pending list, not a claim
