"""The worker process: serves every workflow and activity of the framework on one task queue.

Run as many as you like on the same queue; each builds agent instances on
demand, so no worker depends on having seen another's work. SIGTERM or SIGINT
stops polling and lets running activities finish (up to the grace period).

    python worker.py [--task-queue aiops-agents] [--agent-module my_pkg.agents ...]
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from activities.database.pool import DATABASE_URL_ENV, database_url, open_pool
from agents.registry import MODULES_ENV_VAR, load_agent_modules
from aiops.codec import CodecConfigError, EncryptionCodec, data_converter_from_env
from aiops.connection import connect
from aiops.contracts.agent import DEFAULT_TASK_QUEUE
from aiops.contracts.health import HealthThresholds
from aiops.contracts.search_attributes import REGISTER_COMMAND
from aiops.health_schedule import ensure_health_schedule
from aiops.health_server import DEFAULT_HOST, HealthServer, polling_check, postgres_check, temporal_check
from aiops.logs import FORMAT_ENV, LEVEL_ENV, configure_logging
from aiops.metrics import create_telemetry, fleet_gauge_ttl
from aiops.namespace_setup import ensure_search_attributes, missing_search_attributes
from aiops.runtime.config_listener import ConfigListener
from aiops.runtime.worker_build import build_worker, versioned_deployment
from aiops.serving import bind
from aiops.tracing import shutdown_tracing
from workflows.health_monitor import MonitorInput

log = logging.getLogger("aiops.worker")


async def run(args: argparse.Namespace) -> int:
    # The health/metrics port first: a busy one is one line and exit 2 before anything else starts.
    sock = None
    if args.http_port >= 0:
        try:
            sock = bind_http(args.http_host, args.http_port, args.http_port_fallback)
        except OSError as err:
            log.error("%s", http_bind_error(args.http_host, args.http_port, err))
            return 2
    # Encryption settings next: a wrong key stops the worker here, before it could write anything.
    try:
        converter = data_converter_from_env()
    except CodecConfigError as err:
        log.error("payload encryption: %s", err)
        return 2
    codec = converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        log.info("payload encryption on: sealing with key %r, opening with %s", codec.current, codec.key_ids)
    types = load_agent_modules(args.agent_module)
    log.info("agent types available: %s", ", ".join(types))
    identity = args.identity or f"aiops-worker@{socket.gethostname()}:{os.getpid()}"
    # Fleet gauges (health, pending approvals) are exported only until the next monitor pass, which
    # may run on another worker: that worker exports them then (aiops/metrics.py).
    telemetry = create_telemetry(
        gauge_ttl=max(300.0, 3 * args.health_every), fleet_gauge_ttl=fleet_gauge_ttl(args.health_every)
    )
    client = await connect(
        identity=identity, runtime=telemetry.runtime, service_name="aiops-worker", data_converter=converter
    )
    if args.register_search_attributes:
        added = await ensure_search_attributes(client)
        if added:
            log.info("registered search attributes %s", ", ".join(added))
    missing = await missing_search_attributes(client)
    if missing:
        log.error(
            "the namespace lacks the search attributes %s; register them with:\n  %s",
            ", ".join(missing),
            REGISTER_COMMAND,
        )
        return 2
    url = database_url()
    if url is None and not args.no_database:
        log.error(
            "set %s to a PostgreSQL URL (the config store and audit log live there; "
            "bash temporal-dev/start.sh prints a local one), or pass --no-database to run without them",
            DATABASE_URL_ENV,
        )
        return 2
    pool = await open_pool(url) if url else None
    if pool is None:
        log.warning("running WITHOUT a database: no audit log, no stored configs (--no-database)")
    deployment = None
    if args.worker_versioning:
        if not args.build_id:
            log.error(
                "--worker-versioning needs a build id: pass --build-id or set AIOPS_BUILD_ID (the image tag)"
            )
            return 2
        deployment = versioned_deployment(args.deployment_name, args.build_id)
        log.info("worker versioning: deployment %s, build %s", args.deployment_name, args.build_id)
    worker = build_worker(
        client,
        args.task_queue,
        identity=identity,
        pool=pool,
        deployment=deployment,
        max_cached_workflows=args.max_cached_workflows,
    )
    for extra in worker.extra:  # the plugin workers of the agent types served
        log.info("also polling task queue %r", extra.task_queue)
    listener = ConfigListener(url, client) if url else None
    if listener is not None:
        listener.start()
    checks = {"temporal": temporal_check(client), "polling": polling_check(lambda: worker.is_running)}
    if pool is not None:
        checks["postgres"] = postgres_check(pool)
    http = HealthServer(checks, telemetry.registry)
    if sock is not None:
        port = await http.start(sock=sock)
        log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", args.http_host, port)
    drainer = asyncio.create_task(_drain_metrics(telemetry.bridge.drain))
    if args.health_every > 0:
        try:
            thresholds = _thresholds(args.health_thresholds)
        except (OSError, ValueError) as err:  # pydantic's ValidationError is a ValueError
            log.error("--health-thresholds: %s", err)
            return 2
        monitor = MonitorInput(
            task_queue=args.task_queue,
            thresholds=thresholds,
            alert_agent_id=args.health_alert_agent or None,
        )
        sid = await ensure_health_schedule(client, timedelta(seconds=args.health_every), monitor)
        log.info("health monitor schedule %s: every %ss", sid, args.health_every)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        # One log line (JSON or text, like every other): scripts and tests wait for "worker ready".
        log.info(
            "worker ready: %s polling task queue %r on %s (namespace %s)",
            identity,
            args.task_queue,
            client.service_client.config.target_host,
            client.namespace,
        )
        await stop.wait()
        log.info("shutting down: finishing running activities")
        if listener is not None:
            await listener.stop()
    drainer.cancel()
    await http.stop()
    if pool is not None:
        await pool.close()
    shutdown_tracing()
    return 0


def bind_http(host: str, port: int, fallback: bool = False) -> socket.socket:
    """The health/metrics socket; with ``fallback``, a free port when ``port`` is taken."""
    try:
        return bind(host, port)
    except OSError as err:
        if not (fallback and err.errno == errno.EADDRINUSE and port != 0):
            raise
    sock = bind(host, 0)
    log.warning(
        "port %d on %s is in use (another worker on this host?): health and metrics on port %d instead",
        port,
        host,
        sock.getsockname()[1],
    )
    return sock


def http_bind_error(host: str, port: int, err: OSError) -> str:
    """One line that says what to do about a port the worker cannot listen on."""
    if err.errno == errno.EADDRINUSE:
        return (
            f"cannot serve health and metrics on {host}:{port}: the port is in use (another worker on "
            "this host?); choose another with --http-port (env AIOPS_HTTP_PORT; 0 picks a free one), "
            "pass --http-port-fallback to take a free one when it is busy, or --http-port -1 for none"
        )
    return f"cannot serve health and metrics on {host}:{port}: {err.strerror or err}"


def _thresholds(source: str | None) -> HealthThresholds:
    """Thresholds from a JSON file or inline JSON; the defaults when not given."""
    if not source:
        return HealthThresholds()
    text = Path(source).read_text() if not source.lstrip().startswith("{") else source
    return HealthThresholds.model_validate_json(text)


async def _drain_metrics(drain: Callable[[], None], every: float = 10.0) -> None:
    """Empty the SDK's metric buffer regularly even when nobody scrapes, so nothing is dropped."""
    while True:
        await asyncio.sleep(every)
        drain()


# Sized for thousands of agents and their pending actions (the SDK's default is 1,000).
DEFAULT_CACHED_WORKFLOWS = 10_000


def _cache_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 1 to 1000000 workflows")
    return value


class _EnvOption(NamedTuple):
    """A worker option whose default is read from the environment: ``env`` when set, else
    ``fallback``. argparse parses that default as it parses the flag (``kind``), so a bad value in
    the environment is refused the same way, naming the flag. ``kind=bool`` is a switch, on for
    1, true or yes."""

    flag: str
    env: str
    fallback: str | None
    kind: Callable[[str], Any]
    help: str

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.kind is bool:
            on = os.environ.get(self.env, "").lower() in ("1", "true", "yes")
            parser.add_argument(self.flag, action="store_true", default=on, help=self.help)
        else:
            default = os.environ.get(self.env, self.fallback)
            parser.add_argument(self.flag, type=self.kind, default=default, help=self.help)


# How the worker serves its probes and metrics, checks its agents' health and sizes its cache.
_SERVING_OPTIONS = (
    _EnvOption(
        "--http-host",
        "AIOPS_HTTP_HOST",
        DEFAULT_HOST,
        str,
        "address of /healthz, /readyz and /metrics (env AIOPS_HTTP_HOST; default %(default)s, this "
        "host only: give 0.0.0.0 in a container or pod, where probes and Prometheus come from outside)",
    ),
    _EnvOption(
        "--http-port",
        "AIOPS_HTTP_PORT",
        "9464",
        int,
        "port of /healthz, /readyz and /metrics (env AIOPS_HTTP_PORT; 0 picks a free one, -1 disables)",
    ),
    _EnvOption(
        "--http-port-fallback",
        "AIOPS_HTTP_PORT_FALLBACK",
        None,
        bool,
        "when --http-port is in use, take a free port and log it (env AIOPS_HTTP_PORT_FALLBACK=1); "
        "without it a busy port stops the worker with exit status 2",
    ),
    _EnvOption(
        "--health-every",
        "AIOPS_HEALTH_EVERY",
        "60",
        float,
        "seconds between health checks of this queue's agents (a Temporal Schedule; 0: leave it alone)",
    ),
    _EnvOption(
        "--health-alert-agent",
        "AIOPS_HEALTH_ALERT_AGENT",
        None,
        str,
        "agent id that receives an agent_health event on each health transition",
    ),
    _EnvOption(
        "--health-thresholds",
        "AIOPS_HEALTH_THRESHOLDS",
        None,
        str,
        "health thresholds as JSON or a JSON file (see aiops/contracts/health.py HealthThresholds)",
    ),
    _EnvOption(
        "--max-cached-workflows",
        "AIOPS_MAX_CACHED_WORKFLOWS",
        str(DEFAULT_CACHED_WORKFLOWS),
        _cache_size,
        "workflows kept in memory (env AIOPS_MAX_CACHED_WORKFLOWS; default %(default)s): every "
        "running agent and pending action this worker serves should fit, or each event, query and "
        "health check replays a history; an idle agent costs a few hundred KB",
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run an AIOps agent worker.")
    parser.add_argument(
        "--task-queue",
        default=os.environ.get("AIOPS_TASK_QUEUE", DEFAULT_TASK_QUEUE),
        help="task queue to poll (env AIOPS_TASK_QUEUE; default %(default)s)",
    )
    parser.add_argument(
        "--agent-module",
        action="append",
        default=[],
        help=f"import this module to register its agents (repeatable; also env {MODULES_ENV_VAR})",
    )
    parser.add_argument("--identity", default=None, help="worker identity shown in Temporal")
    parser.add_argument(
        "--worker-versioning",
        action="store_true",
        default=os.environ.get("AIOPS_WORKER_VERSIONING", "").lower() in ("1", "true", "yes"),
        help="serve as one build of a Worker Deployment (env AIOPS_WORKER_VERSIONING=1); new workflow "
        "tasks go only to the build made current with `temporal worker deployment set-current-version`",
    )
    parser.add_argument(
        "--deployment-name",
        default=os.environ.get("AIOPS_DEPLOYMENT_NAME", "aiops-agents"),
        help="Worker Deployment name (env AIOPS_DEPLOYMENT_NAME; default %(default)s)",
    )
    parser.add_argument(
        "--build-id",
        default=os.environ.get("AIOPS_BUILD_ID", ""),
        help="this worker's build id, e.g. the image tag (env AIOPS_BUILD_ID)",
    )
    parser.add_argument(
        "--register-search-attributes",
        action="store_true",
        help="register the framework's search attributes on the namespace if missing",
    )
    parser.add_argument(
        "--no-database",
        action="store_true",
        help=f"run without PostgreSQL ({DATABASE_URL_ENV} unset): no audit log, no config store",
    )
    for option in _SERVING_OPTIONS:
        option.add_to(parser)
    parser.add_argument("--log-level", default=os.environ.get(LEVEL_ENV, "INFO"), help=f"env {LEVEL_ENV}")
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        default=os.environ.get(FORMAT_ENV, "json"),
        help=f"JSON lines with correlation ids, or plain text (env {FORMAT_ENV})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    code = asyncio.run(run(args))
    # The worker has shut down cleanly. Leave without interpreter finalization, during which the
    # SDK's native threads can abort the process (SIGABRT) and turn a clean stop into a crash.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
