"""``aiops gateway``: the HTTP gateway for Alertmanager webhooks and JSON events (docs/gateway.md)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from aiops.cli.output import BadInput, Failed, settings


def routes_option(help: str) -> Any:
    """The ``--routes`` option of every command that reads the gateway config (``aiops gateway``,
    ``aiops source redis``): one file, one environment variable, whatever the command uses of it."""
    return typer.Option(
        "--routes", "-r", metavar="FILE.yaml", envvar="AIOPS_GATEWAY_ROUTES", help=help, dir_okay=False
    )


def gateway(
    ctx: typer.Context,
    routes: Annotated[
        Path,
        routes_option("the gateway config: sources, routes, limits (YAML or JSON; reloaded when it changes)"),
    ],
    host: Annotated[
        str, typer.Option("--host", envvar="AIOPS_GATEWAY_HOST", help="address to listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", envvar="AIOPS_GATEWAY_PORT", min=0, max=65535, help="port (0: a free one)"),
    ] = 9470,
    reload_every: Annotated[
        float,
        typer.Option("--reload-every", min=0, help="seconds between checks of the config file (0: never)"),
    ] = 1.0,
    log_level: Annotated[str | None, typer.Option("--log-level", help="INFO, DEBUG, ...")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="json (default) or text")] = None,
) -> None:
    """Serve POST /v1/alertmanager and /v1/events, GET /healthz, /readyz and /metrics, and the REST
    API under /v1 when the config has an `api:` section (docs/api.md; DATABASE_URL for its tokens).

    Alerts become events routed to running agents through Temporal; a request is
    answered 200 only once Temporal accepted its events, 503 when it did not (the
    sender retries). Connects like every command (TEMPORAL_ADDRESS, ...); it starts
    while Temporal is down and says so at /readyz.
    """
    # The web stack is imported only by this command.
    from aiops.api.app import api_pool
    from aiops.client import AiopsClient
    from aiops.codec import CodecConfigError
    from aiops.connection import connect
    from aiops.gateway.app import Gateway
    from aiops.gateway.codec_server import check_settings
    from aiops.gateway.config import ConfigProblem
    from aiops.gateway.delivery import Connector
    from aiops.gateway.server import bind, serve
    from aiops.logs import configure_logging

    configure_logging(log_level, log_format)
    task_queue = settings(ctx).task_queue

    async def connect_client() -> AiopsClient:
        return AiopsClient(await connect(service_name="aiops-gateway"), task_queue, await api_pool())

    try:
        check_settings()  # the keys and the codec server's tokens: wrong ones stop it here
        instance = Gateway(routes, Connector(connect_client), reload_every=reload_every)
    except (ConfigProblem, CodecConfigError) as err:
        raise BadInput(str(err)) from None
    try:
        sock = bind(host, port)
    except OSError as err:
        raise Failed(f"cannot listen on {host}:{port}: {err.strerror}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    logging.getLogger("aiops.gateway").info(
        "gateway ready on http://%s:%s (config version %s, task queue %s)",
        bound_host,
        bound_port,
        instance.holder.current.version,
        task_queue,
    )

    async def main() -> None:
        try:
            await serve(instance, sock)
        finally:
            await instance.connector.close()

    asyncio.run(main())
