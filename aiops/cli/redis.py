"""``aiops source redis`` and ``aiops publish redis``: Redis Streams in and out (docs/redis.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from aiops.cli.gateway import routes_option
from aiops.cli.output import AiopsGroup, BadInput, Failed, describe_validation, settings

source_app = typer.Typer(cls=AiopsGroup, no_args_is_help=True, help="Read events from an event bus.")
publish_app = typer.Typer(cls=AiopsGroup, no_args_is_help=True, help="Publish the audit log to an event bus.")

URL_ENV = "AIOPS_REDIS_URL"
Url = Annotated[
    str, typer.Option("--url", envvar=URL_ENV, help="redis://[user:pass@]host:port/db or rediss://")
]
LogLevel = Annotated[str | None, typer.Option("--log-level", help="INFO, DEBUG, ...")]
LogFormat = Annotated[str | None, typer.Option("--log-format", help="json (default) or text")]


def _checked(model: Any, values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise BadInput(describe_validation(err)) from None


def _resolved(url: str) -> str:
    """The URL, read from its reference when given as ``env:NAME`` or ``file:/path`` (it may hold a
    password, which then stays out of the process list and shell history)."""
    from agents.secrets import resolve_reference
    from aiops.contracts.errors import SecretUnavailableError
    from aiops.contracts.secret_refs import is_reference

    if not is_reference(url):
        return url
    try:
        return resolve_reference(url, "--url")
    except SecretUnavailableError as err:
        raise BadInput(str(err)) from None


def _on_signals(stop: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


@source_app.command("redis")
def source_redis(
    ctx: typer.Context,
    routes: Annotated[
        Path, routes_option("the gateway config: its routes, delivery settings and agent configs apply")
    ],
    stream: Annotated[list[str], typer.Option("--stream", "-s", help="a stream to read (repeat for more)")],
    url: Url = "redis://127.0.0.1:6379/0",
    group: Annotated[str, typer.Option("--group", help="the consumer group")] = "aiops",
    consumer: Annotated[
        str | None, typer.Option("--consumer", help="this consumer's name (default: host-pid)")
    ] = None,
    source_name: Annotated[
        str, typer.Option("--source-name", help="the sender name routes see (a route's `sources`)")
    ] = "redis",
    dead_letter: Annotated[
        str, typer.Option("--dead-letter", help="the stream refused entries go to, with the reason")
    ] = "aiops:events:dead",
    batch: Annotated[int, typer.Option("--batch", help="entries read at most at once (1-1000)")] = 200,
    block_ms: Annotated[int, typer.Option("--block-ms", help="how long one read waits for entries")] = 1000,
    max_entry_bytes: Annotated[
        int, typer.Option("--max-entry-bytes", help="an entry's names and values")
    ] = 32_000,
    max_fields: Annotated[int, typer.Option("--max-fields", help="fields per entry")] = 16,
    claim_idle: Annotated[
        float,
        typer.Option("--claim-idle", help="seconds a pending entry idles before another consumer claims it"),
    ] = 60.0,
    claim_every: Annotated[float, typer.Option("--claim-every", help="seconds between claim passes")] = 5.0,
    pushback_pause: Annotated[
        float, typer.Option("--pushback-pause", help="first pause when agents do not take events")
    ] = 0.5,
    pushback_max_pause: Annotated[
        float, typer.Option("--pushback-max-pause", help="longest such pause")
    ] = 30.0,
    reload_every: Annotated[
        float,
        typer.Option("--reload-every", min=0, help="seconds between checks of the config file (0: never)"),
    ] = 1.0,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Read Redis streams with a consumer group and deliver each entry's event to the agents its route names.

    An entry is acknowledged once its agents took it; one that cannot be delivered (not JSON, too
    big, no id, no route) goes to the dead-letter stream with the reason. When agents push back it
    reads less and waits, acknowledging nothing. Connects to Temporal like every command.
    """
    from aiops.client import AiopsClient
    from aiops.connection import connect
    from aiops.gateway.config import ConfigProblem
    from aiops.gateway.delivery import Connector, Deliverer
    from aiops.gateway.reload import ConfigHolder
    from aiops.logs import configure_logging
    from aiops.sources.redis_settings import RedisSourceSettings
    from aiops.sources.redis_source import RedisSource, open_redis

    values: dict[str, Any] = dict(
        url=_resolved(url),
        streams=stream,
        group=group,
        source_name=source_name,
        dead_letter_stream=dead_letter,
        batch=batch,
        block_ms=block_ms,
        max_entry_bytes=max_entry_bytes,
        max_fields=max_fields,
        claim_idle_seconds=claim_idle,
        claim_every_seconds=claim_every,
        pushback_pause_seconds=pushback_pause,
        pushback_max_pause_seconds=pushback_max_pause,
    )
    if consumer is not None:
        values["consumer"] = consumer
    config: RedisSourceSettings = _checked(RedisSourceSettings, values)
    configure_logging(log_level, log_format)
    try:
        holder = ConfigHolder(routes)
    except ConfigProblem as err:
        raise BadInput(str(err)) from None
    task_queue = settings(ctx).task_queue

    async def connect_client() -> AiopsClient:
        return AiopsClient(await connect(service_name="aiops-redis-source"), task_queue)

    async def main() -> None:
        connector = Connector(connect_client)
        redis = open_redis(config.url, config.block_ms)
        source = RedisSource(config, redis, holder, Deliverer(connector))
        _on_signals(source.stop)
        watcher = asyncio.create_task(holder.watch(reload_every)) if reload_every > 0 else None
        logging.getLogger("aiops.sources.redis").info(
            "redis source ready: consumer %s of group %s on %s (pid %d)",
            config.consumer,
            config.group,
            ", ".join(config.streams),
            os.getpid(),
        )
        try:
            await source.run()
        finally:
            if watcher is not None:
                watcher.cancel()
            await redis.aclose()
            await connector.close()

    try:
        asyncio.run(main())
    except OSError as err:
        raise Failed(f"the redis source failed: {err}") from None


@publish_app.command("redis")
def publish_redis(
    url: Url = "redis://127.0.0.1:6379/0",
    stream: Annotated[str, typer.Option("--stream", "-s", help="the stream to publish to")] = "aiops:audit",
    maxlen: Annotated[
        int, typer.Option("--maxlen", help="the stream is trimmed to about this many entries")
    ] = (1_000_000),
    agent: Annotated[
        list[str] | None, typer.Option("--agent", "-a", help="only this agent's rows (repeat; default all)")
    ] = None,
    all_steps: Annotated[
        bool, typer.Option("--all-steps", help="every audit row, not only those of an action's life")
    ] = False,
    batch: Annotated[int, typer.Option("--batch", help="rows per agent per pass")] = 500,
    every: Annotated[float, typer.Option("--every", help="seconds between passes that found nothing")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="publish what is there, then exit")] = False,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Publish audit rows (needs DATABASE_URL) to a Redis stream, each once, in order per agent.

    Each entry carries the row's seq, agent_id, action_id, step, actor, times, hash and detail. The
    position (last seq per agent) is kept in Redis beside the stream, written with each entry, so a
    restart publishes nothing twice and skips nothing.
    """
    from activities.database.pool import DATABASE_URL_ENV, open_pool
    from aiops.logs import configure_logging
    from aiops.sources.redis_publisher import AuditPublisher
    from aiops.sources.redis_settings import RedisPublishSettings
    from aiops.sources.redis_source import open_redis

    config: RedisPublishSettings = _checked(
        RedisPublishSettings,
        dict(
            url=_resolved(url),
            stream=stream,
            maxlen=maxlen,
            agents=agent or [],
            all_steps=all_steps,
            batch=batch,
            every_seconds=every,
        ),
    )
    database_url = os.environ.get(DATABASE_URL_ENV)
    if not database_url:
        raise BadInput(f"{DATABASE_URL_ENV} is not set: the audit log lives in PostgreSQL")
    configure_logging(log_level, log_format)

    async def main() -> int:
        pool = await open_pool(database_url, attempts=3)
        redis = open_redis(config.url)
        publisher = AuditPublisher(config, redis, pool)
        try:
            if once:
                while await publisher.publish_once():
                    pass
            else:
                _on_signals(publisher.stop)
                logging.getLogger("aiops.sources.redis").info(
                    "audit publisher ready: to %s (pid %d)", config.stream, os.getpid()
                )
                await publisher.run()
            return publisher.stats.published
        finally:
            await redis.aclose()
            await pool.close()

    try:
        published = asyncio.run(main())
    except Exception as err:
        raise Failed(f"publishing to redis failed: {' '.join(str(err).split())[:300]}") from None
    if once:
        typer.echo(f"published {published} rows to {stream}")
