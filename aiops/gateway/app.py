"""The gateway's HTTP application, on Starlette.

Why Starlette (served by uvicorn): a small, well-kept ASGI toolkit (the base FastAPI
stands on) that gives the raw request stream, which the gateway needs twice: to stop
reading at the size limit instead of buffering whatever a sender streams, and to
check an HMAC over the exact bytes received. The gateway needs no OpenAPI or
dependency injection, so FastAPI would add weight and no safety. uvicorn is the
reference ASGI server (HTTP/1.1 parsing by h11 or httptools, graceful shutdown that
finishes in-flight requests).

Every request is answered with JSON. A refusal is a 4xx whose ``error`` is one line:
unknown source (404), too large (413), too slow to send (408), bad token or
signature (401), malformed JSON (400), wrong schema (422). A 200 means every routed
event was taken by its agent; 503 (with ``Retry-After``) means it was not (Temporal
away, an agent not running or whose config its type refuses, the source over its
rate limit), and the sender should deliver again: Alertmanager retries a 5xx within
its flush, while it drops a 4xx until the next group interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.routing import Route as HttpRoute

from aiops.api.app import api_app
from aiops.contracts.errors import AiopsError
from aiops.contracts.limits import MAX_EVENT_BYTES
from aiops.contracts.models import SystemEvent
from aiops.gateway import auth
from aiops.gateway.alertmanager import WebhookPayload, alert_event, event_size
from aiops.gateway.body import read_body
from aiops.gateway.codec_server import codec_routes
from aiops.gateway.config import LoadedConfig, Source, describe
from aiops.gateway.delivery import Connector, DeliveredIds, Deliverer, one_line
from aiops.gateway.intake import EventRefused, parse_event
from aiops.gateway.metrics import GatewayMetrics
from aiops.gateway.ratelimit import RateLimiter
from aiops.gateway.reload import ConfigHolder
from aiops.gateway.routing import event_labels, select_routes

log = logging.getLogger("aiops.gateway")

DEFAULT_SOURCE = "default"


class Refused(AiopsError):
    """A request answered with ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass
class Intake:
    """One authenticated, parsed request on its way to the agents."""

    endpoint: str
    source_name: str
    loaded: LoadedConfig
    started: float
    batches: dict[str, list[SystemEvent]] = field(default_factory=lambda: defaultdict(list))
    sizes: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # JSON bytes per agent
    results: list[dict[str, Any]] = field(default_factory=list)
    unrouted: int = 0
    rejected: int = 0
    truncated: int = 0  # alerts Alertmanager left out of the notification (its webhook max_alerts)
    _taken: set[tuple[str, str]] = field(default_factory=set)  # (agent, event id): constant time

    def add(self, agent_id: str, event: SystemEvent, size: int) -> bool:
        if (agent_id, event.id) in self._taken:
            return False  # the same event through two routes to one agent: once is enough
        self._taken.add((agent_id, event.id))
        self.batches[agent_id].append(event)
        self.sizes[agent_id] += size
        return True


class Gateway:
    def __init__(self, routes_file: Path, connector: Connector, reload_every: float = 1.0) -> None:
        self.metrics = GatewayMetrics()
        self.holder = ConfigHolder(routes_file, self._config_changed)
        self.connector = connector
        self.deliverer = Deliverer(connector)
        self.limiter = RateLimiter()
        self.delivered = DeliveredIds()
        self.reload_every = reload_every

    def _config_changed(self, loaded: LoadedConfig | None, result: str) -> None:
        self.metrics.config_reloads.labels(result).inc()
        if loaded is not None:
            self.metrics.config_version.set(loaded.version)

    # ----- the application -----------------------------------------------------

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            watcher = (
                asyncio.create_task(self.holder.watch(self.reload_every)) if self.reload_every > 0 else None
            )
            try:
                yield
            finally:
                if watcher is not None:
                    watcher.cancel()

        return Starlette(
            routes=[
                HttpRoute("/v1/alertmanager", self.alertmanager, methods=["POST"]),
                HttpRoute("/v1/alertmanager/{source}", self.alertmanager, methods=["POST"]),
                HttpRoute("/v1/events", self.events, methods=["POST"]),
                HttpRoute("/v1/events/{source}", self.events, methods=["POST"]),
                HttpRoute("/healthz", self.healthz, methods=["GET"]),
                HttpRoute("/readyz", self.readyz, methods=["GET"]),
                HttpRoute("/metrics", self.metrics_page, methods=["GET"]),
                *codec_routes(self.metrics.registry),  # /codec/{encode,decode}: docs/encryption.md
                Mount("/", app=api_app(self)),  # the REST API (docs/api.md), after the routes above
            ],
            lifespan=lifespan,
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"alive": True})

    async def readyz(self, request: Request) -> Response:
        problem = await self.connector.not_ready()
        body: dict[str, Any] = {
            "ready": problem is None,
            "checks": {"temporal": "ok" if problem is None else f"failing: {problem}"},
            "config_version": self.holder.current.version,
        }
        if self.holder.last_refusal:
            body["last_config_refusal"] = self.holder.last_refusal
        return JSONResponse(body, status_code=200 if problem is None else 503)

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def alertmanager(self, request: Request) -> Response:
        return await self._handle(request, "alertmanager", self._alerts)

    async def events(self, request: Request) -> Response:
        return await self._handle(request, "events", self._events)

    # ----- one request ---------------------------------------------------------

    async def _handle(self, request: Request, endpoint: str, convert: Any) -> Response:
        source_name = request.path_params.get("source", DEFAULT_SOURCE)
        intake = Intake(endpoint, source_name, self.holder.current, time.monotonic())
        try:
            document = await self._admit(request, intake)
            convert(document, intake)
            return await self._deliver(intake)
        except Refused as refusal:
            return self._answer(intake, refusal.status, {"error": refusal.reason}, refusal.headers)
        except Exception as err:  # a bug must cost one request a 500, never the process
            log.exception("gateway request failed")
            return self._answer(intake, 500, {"error": f"internal error: {one_line(err)}"})

    def _answer(
        self, intake: Intake, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        source = intake.source_name if intake.source_name in intake.loaded.config.sources else "unknown"
        self.metrics.requests.labels(intake.endpoint, source, str(status)).inc()
        if status >= 400:
            log.info("%s %s from %s: %s %s", "POST", intake.endpoint, source, status, body.get("error"))
        return JSONResponse(body, status_code=status, headers=headers)

    async def _admit(self, request: Request, intake: Intake) -> Any:
        config = intake.loaded.config
        source: Source | None = config.sources.get(intake.source_name)
        if source is None:
            raise Refused(404, f"unknown source {intake.source_name[:64]!r}: it is not in the gateway config")
        limits = config.limits
        body = await read_body(request, limits.max_body_bytes, limits.read_timeout_seconds, Refused)
        problem = auth.check(
            source.auth, intake.loaded.secrets.get(intake.source_name), request.headers, body
        )
        if problem is not None:
            headers = {"WWW-Authenticate": "Bearer"} if source.auth.type == "bearer" else None
            raise Refused(401, problem, headers)
        wait = self.limiter.take(intake.source_name, source.rate_limit)
        if wait:
            # 503, not 429: Alertmanager retries a 5xx within the flush (with backoff) but drops a
            # 4xx until the next group_interval; the sender learns the truth and delivers again.
            raise Refused(
                503,
                f"source {intake.source_name!r} is over its rate limit "
                f"({source.rate_limit.per_second:g}/s, burst {source.rate_limit.burst}); retry in {wait}s",
                {"Retry-After": str(wait)},
            )
        try:
            return json.loads(body, parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            raise Refused(400, f"malformed JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
        except (UnicodeDecodeError, RecursionError):
            raise Refused(400, "malformed JSON: not UTF-8 text, or nested too deeply") from None
        except ValueError as err:  # NaN or Infinity: Python's json reads them, JSON has none
            raise Refused(400, f"malformed JSON: {err}") from None

    def _alerts(self, document: Any, intake: Intake) -> None:
        config = intake.loaded.config
        try:
            payload = WebhookPayload.model_validate(document)
        except ValidationError as err:
            raise Refused(422, f"not an Alertmanager webhook payload (version 4): {describe(err)}") from None
        if len(payload.alerts) > config.limits.max_events_per_request:
            raise Refused(
                422,
                f"{len(payload.alerts)} alerts, over the limit of {config.limits.max_events_per_request}",
            )
        if payload.truncated_alerts:
            # Alertmanager cut them (the receiver's max_alerts) and counts them notified: no retry
            # brings them, so they are said loudly, not silently missing (docs/gateway.md).
            intake.truncated = payload.truncated_alerts
            log.warning(
                "Alertmanager left %d alert(s) of group %s out of the notification (its webhook "
                "max_alerts): the agents never see them; set max_alerts: 0 on the aiops receiver",
                payload.truncated_alerts,
                payload.group_key[:200],
            )
        for alert in payload.alerts:
            routes = select_routes(config.routes, alert.labels, intake.source_name)
            result: dict[str, Any] = {"fingerprint": alert.stable_fingerprint(), "status": alert.status}
            intake.results.append(result)
            if not routes:
                result["outcome"] = "unrouted"
                intake.unrouted += 1
                continue
            agents: list[str] = []
            for route in routes:
                event = alert_event(payload, alert, route, intake.source_name)
                result["event_id"] = event.id
                size = event_size(event)
                if size > MAX_EVENT_BYTES:
                    result["outcome"] = "rejected"
                    result["reason"] = (
                        f"the event is {size} bytes, over the agents' {MAX_EVENT_BYTES}-byte limit"
                    )
                    intake.rejected += 1
                    break
                agents += [a for a in route.agents if intake.add(a, event, size)]
            else:
                result.update(outcome="delivered", agents=agents, routes=[r.name for r in routes])
        if intake.unrouted:
            unrouted = [r["fingerprint"] for r in intake.results if r["outcome"] == "unrouted"]
            log.info(
                "%d alert(s) from %s matched no route: %s", len(unrouted), intake.source_name, unrouted[:10]
            )

    def _events(self, document: Any, intake: Intake) -> None:
        config = intake.loaded.config
        items = document if isinstance(document, list) else [document]
        if not items:
            raise Refused(422, "no events: send one event object or a non-empty list of them")
        if len(items) > config.limits.max_events_per_request:
            raise Refused(
                422, f"{len(items)} events, over the limit of {config.limits.max_events_per_request}"
            )
        events: list[tuple[SystemEvent, int]] = []
        for index, item in enumerate(items):
            where = f"event {index}" if isinstance(document, list) else "the event"
            try:
                events.append(parse_event(item, where))
            except EventRefused as err:
                raise Refused(422, str(err)) from None
        for event, size in events:
            routes = select_routes(config.routes, event_labels(event), intake.source_name)
            result: dict[str, Any] = {"event_id": event.id}
            intake.results.append(result)
            if not routes:
                result["outcome"] = "unrouted"
                intake.unrouted += 1
                continue
            agents = [a for route in routes for a in route.agents if intake.add(a, event, size)]
            result.update(outcome="delivered", agents=agents, routes=[r.name for r in routes])

    async def _deliver(self, intake: Intake) -> Response:
        loaded, source = intake.loaded, intake.source_name
        count = self.metrics.events
        if intake.unrouted:
            count.labels(source, "unrouted").inc(intake.unrouted)
        if intake.rejected:
            count.labels(source, "rejected").inc(intake.rejected)
        if intake.truncated:
            count.labels(source, "truncated").inc(intake.truncated)
        batches = {agent: events for agent, events in intake.batches.items() if events}
        failures = await self.deliverer.deliver(
            batches, loaded.agent_configs, loaded.config.delivery, intake.sizes
        )
        failed = {f.agent_id: f for f in failures}
        delivered = 0
        for agent_id, events in batches.items():
            if agent_id in failed:
                count.labels(source, "failed").inc(len(events))
                continue
            for event in events:
                seen = self.delivered.seen(agent_id, event.id)
                count.labels(source, "duplicate" if seen else "accepted").inc()
                self.delivered.add(agent_id, event.id)
                delivered += 1
        if failures:
            retry_after = loaded.config.delivery.retry_after_seconds
            first = failures[0]
            more = f" (and {len(failures) - 1} more agents)" if len(failures) > 1 else ""
            hint = "; start it, or name its config in the route's agent_configs" if first.not_running else ""
            body = {
                "error": f"{first.reason}{more}{hint}; nothing is lost: deliver again",
                "failed_agents": {f.agent_id: f.reason for f in failures},
                "delivered_agents": sorted(set(batches) - set(failed)),
                "retry_after": retry_after,
            }
            return self._answer(intake, 503, body, {"Retry-After": str(retry_after)})
        if batches:
            self.metrics.delivery.labels(source).observe(time.monotonic() - intake.started)
        body = {
            "source": source,
            "config_version": loaded.version,
            "received": len(intake.results),
            "delivered": delivered,
            "unrouted": intake.unrouted,
            "rejected": intake.rejected,
            "truncated": intake.truncated,
            "results": intake.results,
        }
        return self._answer(intake, 200, body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
