"""The event routes, in the API's document: served by the gateway's own intake, not here.

``POST /v1/events[/{source}]`` and ``POST /v1/alertmanager[/{source}]`` are the gateway's routes
(aiops/gateway/app.py), matched before the API's mount, so the intake stays one implementation:
per-source auth (bearer token or HMAC signature, from the gateway config), routing, delivery.
They are declared here only so the OpenAPI document describes them; a request never reaches these
handlers while the gateway serves them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from pydantic import BaseModel

from aiops.api.app import ApiError
from aiops.api.models import error_responses
from aiops.contracts.models import SystemEvent
from aiops.gateway.alertmanager import WebhookPayload


class IntakeAnswer(BaseModel):
    """The gateway's answer once Temporal accepted every routed event."""

    source: str
    config_version: int
    received: int
    delivered: int
    unrouted: int
    rejected: int
    results: list[dict[str, Any]]


_ANSWERS = error_responses(
    {
        400: "malformed JSON",
        401: "the source's bearer token or HMAC signature is missing or wrong",
        404: "unknown source",
        408: "the body arrived too slowly",
        413: "the body is over the size limit",
        422: "not an event (or an Alertmanager webhook payload, version 4)",
        503: (
            "not every event was taken (Temporal unavailable, the source over its rate limit, or an "
            "agent whose config its type refuses): nothing is lost, deliver again (see Retry-After)"
        ),
    }
)
NOTE = (
    "Served by the gateway's intake with the source's own auth (gateway config `sources`: "
    "`Authorization: Bearer <token>` or `X-Aiops-Signature: sha256=<hex>`), not an API token. "
    "Without `{source}`, the source named `default`."
)
router = APIRouter(prefix="/v1", tags=["events"], responses=_ANSWERS)


def _gateway_only() -> ApiError:
    return ApiError(404, "the event routes are served by the gateway's intake")


Events = SystemEvent | list[SystemEvent]


@router.post("/events", response_model=IntakeAnswer, description=NOTE)
async def events(body: Events = Body()) -> IntakeAnswer:  # noqa: B008
    """Send one event or a list of them (source ``default``) to the agents the routes name."""
    raise _gateway_only()


@router.post("/events/{source}", response_model=IntakeAnswer, description=NOTE)
async def source_events(source: str, body: Events = Body()) -> IntakeAnswer:  # noqa: B008
    """Send one event or a list of them, from ``source``, to the agents the routes name."""
    raise _gateway_only()


@router.post("/alertmanager", response_model=IntakeAnswer, description=NOTE)
async def alertmanager(body: WebhookPayload = Body()) -> IntakeAnswer:  # noqa: B008
    """Prometheus Alertmanager's webhook (version 4, source ``default``): each alert, an event."""
    raise _gateway_only()


@router.post("/alertmanager/{source}", response_model=IntakeAnswer, description=NOTE)
async def source_alertmanager(source: str, body: WebhookPayload = Body()) -> IntakeAnswer:  # noqa: B008
    """Prometheus Alertmanager's webhook (version 4) from ``source``: each alert, an event."""
    raise _gateway_only()
