"""The endpoints: each authenticates, checks the caller's role, and makes one call on the client.

Commands, config changes and decisions are relayed as the caller's own: the request names the
authenticated person and carries the credential they signed; the workflow verifies it and its
refusal comes back verbatim (409). Nothing here signs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from activities.database.api_tokens import ApiRefusal, ApiTokens
from activities.database.audit_log import AuditRow, ChainReport
from agents.config_diff import ConfigChange
from aiops.api.app import ApiError, Context, one_line
from aiops.api.auth import Forbidden, Principal, Unauthenticated, authenticate, has_role
from aiops.api.models import (
    ApplyBody,
    CommandBody,
    DecisionBody,
    InboxItem,
    Me,
    RollbackBody,
    StartBody,
    Started,
    StopBody,
    error_responses,
)
from aiops.contracts.action import ActionRecord, DecisionRequest
from aiops.contracts.activities import StoredConfig
from aiops.contracts.agent import (
    AgentState,
    AgentStatus,
    CommandApplied,
    CommandRequest,
    ConfigApplied,
    ReconfigureRequest,
)
from aiops.contracts.config import AgentVerb
from aiops.contracts.models import RiskLevel

log = logging.getLogger("aiops.api")

_ERRORS = error_responses(
    {
        400: "bad request",
        401: "no usable bearer token (audited)",
        403: "the caller's roles do not allow this (audited)",
        404: "no such agent, action, version or endpoint; or the API is off",
        408: "the body arrived too slowly",
        409: "refused by the workflow (its reason, verbatim)",
        413: "the body is over the size limit",
        422: "the request does not match the schema",
        429: "over the rate limit (see Retry-After)",
        503: "Temporal or PostgreSQL unavailable",
    }
)
router = APIRouter(prefix="/v1", responses=_ERRORS)
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An identity provider's JWT (api.issuers) or a personal API token (aiops api-token create)",
)
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
AgentId = Annotated[str, Path(pattern=AGENT_ID_PATTERN)]
AgentFilter = Annotated[str | None, Query(pattern=AGENT_ID_PATTERN)]
ActionId = Annotated[str, Path(min_length=1, max_length=500, pattern=r"^[A-Za-z0-9_.:@-]+$")]


def _context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


async def _refuse(request: Request, context: Context, who: str, status: int, reason: str) -> ApiError:
    """Record the refusal (who, what, why) and return the error to raise."""
    remote = request.client.host if request.client else ""
    try:
        tokens = await context.tokens()
        if tokens is not None:
            await tokens.refused(who, request.method, request.url.path, status, reason, remote)
        else:
            log.warning("API refusal not stored (no database): %s %s %s", who, request.url.path, reason)
    except Exception as err:  # the refusal stands even when it cannot be stored
        log.error(
            "API refusal not stored: %s (%s %s by %s: %s)",
            one_line(err),
            request.method,
            request.url.path,
            who,
            reason,
        )
    log.info("API %s %s by %s: %s %s", request.method, request.url.path, who or "?", status, reason)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, reason, headers)


def _take(context: Context, key: str) -> None:
    settings = context.settings()
    wait = context.limiter.take(key, settings.rate_limit)
    if wait:
        raise ApiError(
            429,
            f"over the API's rate limit ({settings.rate_limit.per_second:g}/s, burst "
            f"{settings.rate_limit.burst}); retry in {wait}s",
            {"Retry-After": str(wait)},
        )


def caller(needed: str | None) -> Callable[..., Awaitable[Principal]]:
    """The dependency that names the caller and checks they hold ``needed`` (None: anyone known)."""

    async def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    ) -> Principal:
        context = _context(request)
        settings = context.settings()
        _take(context, f"api-address:{request.client.host if request.client else '?'}")
        # A call from the web console's script: its signed session (and CSRF token) was checked
        # in front of the API (aiops/console/app.py), which names the person here.
        principal: Principal | None = getattr(request.state, "console_principal", None)
        try:
            if principal is None:
                principal = await authenticate(
                    request.headers.get("authorization", ""), settings, await context.tokens()
                )
        except Unauthenticated as err:
            raise await _refuse(request, context, "", 401, str(err)) from None
        _take(context, f"api:{principal.name}")
        if needed is not None and not has_role(principal, needed, settings.decide_roles):
            wanted = (
                f"one of {', '.join(settings.decide_roles)}" if needed == "decide" else f"{needed} or above"
            )
            roles = ", ".join(principal.roles) or "no roles"
            reason = (
                f"{principal.name} ({roles}) may not {request.method} {request.url.path}: it takes {wanted}"
            )
            raise await _refuse(request, context, principal.name, 403, one_line(Forbidden(reason)))
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(caller("viewer"))]
Operator = Annotated[Principal, Depends(caller("operator"))]
Sre = Annotated[Principal, Depends(caller("sre"))]
Admin = Annotated[Principal, Depends(caller("admin"))]
Decider = Annotated[Principal, Depends(caller("decide"))]
Anyone = Annotated[Principal, Depends(caller(None))]


@router.get("/me", response_model=Me, tags=["auth"])
async def me(who: Anyone) -> Me:
    """Who the bearer token names, and their roles."""
    return who


# ----- agents ---------------------------------------------------------------------------------


# Names the agents a list left out because they did not answer their status query in time (their
# workers down, say): the list answers with the rest instead of failing whole.
UNANSWERED_HEADER = "Aiops-Unanswered-Agents"
UNANSWERED_NAMED = 100  # ids named in the header at most (the count is always there)


@router.get(
    "/agents",
    response_model=list[AgentStatus],
    tags=["agents"],
    responses={
        200: {
            "headers": {
                UNANSWERED_HEADER: {
                    "description": "Present when some agents did not answer their status query within "
                    "a few seconds (their workers down, say) and are left out of the list: "
                    f"'COUNT: ID,ID,...' (at most {UNANSWERED_NAMED} ids).",
                    "schema": {"type": "string"},
                }
            }
        }
    },
)
async def list_agents(
    request: Request,
    response: Response,
    who: Viewer,
    state: AgentState | None = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
) -> list[AgentStatus]:
    """The running agents of the gateway's task queue, optionally in one state or of one type.
    An agent that does not answer within a few seconds is left out and named in the
    ``Aiops-Unanswered-Agents`` header (and the gateway's log, with why), so one agent whose
    workers are down does not fail the whole list."""
    client = await _context(request).client()
    found = await client.agents.survey(state)
    if found.unanswered:
        ids = ",".join(u.agent_id for u in found.unanswered[:UNANSWERED_NAMED])
        response.headers[UNANSWERED_HEADER] = f"{len(found.unanswered)}: {ids}"
        for silent in found.unanswered:
            log.warning("agent %s left out of the list: %s", silent.agent_id, silent.reason)
    return [s for s in found.statuses if type is None or s.type == type]


@router.post("/agents", response_model=Started, status_code=201, tags=["agents"])
async def start_agent(request: Request, who: Sre, body: StartBody) -> Started:
    """Start an agent with this config (or reach it if it runs already)."""
    client = await _context(request).client()
    handle = await client.agents.start(body.config, started_by=who.name)
    return Started(agent_id=body.config.id, workflow_id=handle.id)


@router.get("/agents/{agent_id}", response_model=AgentStatus, tags=["agents"])
async def agent_status(request: Request, who: Viewer, agent_id: AgentId) -> AgentStatus:
    client = await _context(request).client()
    return await client.agents.status(agent_id)


async def _command(
    request: Request, who: Principal, agent_id: str, verb: AgentVerb, body: CommandBody
) -> CommandApplied:
    client = await _context(request).client()
    drain = body.drain if isinstance(body, StopBody) else True
    command = CommandRequest(
        verb=verb, actor=who.name, credential=body.credential, reason=body.reason, drain=drain
    )
    return await client.agents.send_command(agent_id, command)


@router.post("/agents/{agent_id}/pause", response_model=CommandApplied, tags=["agents"])
async def pause(request: Request, who: Operator, agent_id: AgentId, body: CommandBody) -> CommandApplied:
    return await _command(request, who, agent_id, AgentVerb.PAUSE, body)


@router.post("/agents/{agent_id}/resume", response_model=CommandApplied, tags=["agents"])
async def resume(request: Request, who: Operator, agent_id: AgentId, body: CommandBody) -> CommandApplied:
    return await _command(request, who, agent_id, AgentVerb.RESUME, body)


@router.post("/agents/{agent_id}/stop", response_model=CommandApplied, tags=["agents"])
async def stop(request: Request, who: Sre, agent_id: AgentId, body: StopBody) -> CommandApplied:
    return await _command(request, who, agent_id, AgentVerb.STOP, body)


@router.post("/agents/{agent_id}/reset-breaker", response_model=CommandApplied, tags=["agents"])
async def reset_breaker(request: Request, who: Sre, agent_id: AgentId, body: CommandBody) -> CommandApplied:
    return await _command(request, who, agent_id, AgentVerb.RESET_CIRCUIT_BREAKER, body)


# ----- configs --------------------------------------------------------------------------------


@router.get("/agents/{agent_id}/configs", response_model=list[StoredConfig], tags=["configs"])
async def config_history(
    request: Request, who: Viewer, agent_id: AgentId, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[StoredConfig]:
    """The agent's stored config versions, newest first."""
    return await (await _context(request).client()).config.history(agent_id, limit)


@router.get("/agents/{agent_id}/configs/diff", response_model=list[ConfigChange], tags=["configs"])
async def config_diff(
    request: Request,
    who: Viewer,
    agent_id: AgentId,
    old: Annotated[int, Query(ge=1, le=2_000_000_000)],
    new: Annotated[int, Query(ge=1, le=2_000_000_000)],
) -> list[ConfigChange]:
    return await (await _context(request).client()).config.diff(agent_id, old, new)


@router.get("/agents/{agent_id}/configs/{version}", response_model=StoredConfig, tags=["configs"])
async def config_version(
    request: Request, who: Viewer, agent_id: AgentId, version: Annotated[int, Path(ge=1, le=2_000_000_000)]
) -> StoredConfig:
    return await (await _context(request).client()).config.version(agent_id, version)


async def _reconfigure(
    request: Request, who: Principal, agent_id: str, body: ApplyBody | RollbackBody
) -> ConfigApplied:
    """Relay a new config or a rollback as the caller's own change, with the credential they signed."""
    change = ReconfigureRequest(
        config=body.config if isinstance(body, ApplyBody) else None,
        rollback_to=body.version if isinstance(body, RollbackBody) else None,
        author=who.name,
        actor=who.name,
        comment=body.comment,
        credential=body.credential,
    )
    return await (await _context(request).client()).config.reconfigure(agent_id, change)


@router.post("/agents/{agent_id}/configs", response_model=ConfigApplied, tags=["configs"])
async def apply_config(request: Request, who: Admin, agent_id: AgentId, body: ApplyBody) -> ConfigApplied:
    """Apply a new config as the next version (validated on a worker, hot-reloaded)."""
    if body.config.id != agent_id:
        raise ApiError(422, f"the config is agent {body.config.id!r}'s, not {agent_id!r}'s")
    return await _reconfigure(request, who, agent_id, body)


@router.post("/agents/{agent_id}/configs/rollback", response_model=ConfigApplied, tags=["configs"])
async def rollback_config(
    request: Request, who: Admin, agent_id: AgentId, body: RollbackBody
) -> ConfigApplied:
    """Store a copy of an earlier version as the next version and apply it."""
    return await _reconfigure(request, who, agent_id, body)


# ----- actions --------------------------------------------------------------------------------


@router.get("/actions", response_model=list[InboxItem], tags=["actions"])
async def inbox(
    request: Request,
    who: Viewer,
    agent_id: AgentFilter = None,
    risk: RiskLevel | None = None,
) -> list[InboxItem]:
    """The actions waiting for a decision, oldest first, optionally of one agent or one risk."""
    found = await (await _context(request).client()).approvals.inbox(agent_id)
    return [
        InboxItem(action_id=action_id, record=record)
        for action_id, record in found
        if risk is None or record.action.risk_level == risk
    ]


@router.get("/actions/{action_id}", response_model=ActionRecord, tags=["actions"])
async def action(request: Request, who: Viewer, action_id: ActionId) -> ActionRecord:
    """The action's record: its event, plan and digest, policy decision, approvals, refusals, result."""
    return await (await _context(request).client()).approvals.action(action_id)


@router.post("/actions/{action_id}/decision", response_model=ActionRecord, tags=["actions"])
async def decide(request: Request, who: Decider, action_id: ActionId, body: DecisionBody) -> ActionRecord:
    """Relay the caller's signed decision to the action's ``decide`` update; a refusal comes back
    409 with the workflow's reason (which the workflow has audited)."""
    decision = DecisionRequest(
        approve=body.approve,
        approver=who.name,
        comment=body.comment,
        plan_digest=body.plan_digest,
        credential=body.credential,
    )
    return await (await _context(request).client()).approvals.decide(action_id, decision)


# ----- audit ----------------------------------------------------------------------------------


@router.get("/audit", response_model=list[AuditRow], tags=["audit"])
async def audit_rows(
    request: Request,
    who: Viewer,
    agent_id: AgentFilter = None,
    action_id: Annotated[str | None, Query(max_length=500)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRow]:
    """The newest audit rows, of one agent or action, in a time window."""
    client = await _context(request).client()
    return await client.audit.rows(
        agent_id=agent_id, action_id=action_id, since=since, until=until, limit=limit, newest_first=True
    )


@router.get("/audit/verify", response_model=list[ChainReport], tags=["audit"])
async def audit_verify(
    request: Request,
    who: Viewer,
    agent_id: AgentFilter = None,
) -> list[ChainReport]:
    """Check the hash chain of one agent, or of every agent."""
    return await (await _context(request).client()).audit.verify(agent_id)


@router.get("/refusals", response_model=list[ApiRefusal], tags=["audit"])
async def refusals(
    request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ApiRefusal]:
    """The API's own refused calls (401, 403), newest first: who, what, why."""
    tokens: ApiTokens | None = await _context(request).tokens()
    if tokens is None:
        raise ApiError(503, "the API's refusals are in PostgreSQL; the gateway has no DATABASE_URL")
    return await tokens.refusals(limit)
