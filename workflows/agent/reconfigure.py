"""Applying a config change to a running agent, one change at a time, between two batches.

Validate on a worker (pydantic, the agent type's hook, secret references) →
store as version N+1 → hold new batches and wait for the one in flight → the
agent's reload hook → switch. A refusal at any step leaves the stored
versions and the agent as they were, and says why. The request models and the
validator's rules live in ``config_change.py``; this is the procedure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.config_activities import ConfigActivities
    from agents.config_diff import same_settings
    from aiops.contracts.activities import (
        CONFIG_NOT_STORABLE,
        NO_CONFIG_STORE,
        NON_RETRYABLE_AGENT_ERRORS,
        UNKNOWN_CONFIG_VERSION,
        AuditStep,
        ConfigProposal,
        LoadConfigCall,
        ReloadCall,
    )
    from aiops.contracts.agent import (
        CONFIG_REFUSED,
        AgentState,
        ConfigApplied,
        ReconfigureRequest,
    )
    from aiops.contracts.config import AgentConfig
    from aiops.contracts.errors import InvalidAgentConfigError
    from aiops.contracts.shared_settings import share_settings
    from workflows.agent.command_gate import CommandVerdict
    from workflows.agent.config_change import parse_request, refusal
    from workflows.agent.health import publish_state
    from workflows.failures import cause_message

if TYPE_CHECKING:
    from workflows.agent.context import AgentContext

A = TypeVar("A")
R = TypeVar("R")

# How long a config change waits for the database before it gives up (the caller is waiting).
CONFIG_CHANGE_PATIENCE = timedelta(minutes=10)
CONFIG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # a database outage delays a config change; it never loses it
    non_retryable_error_types=[
        NO_CONFIG_STORE,
        UNKNOWN_CONFIG_VERSION,
        InvalidAgentConfigError.__name__,
        CONFIG_NOT_STORABLE,
        CONFIG_REFUSED,
    ],
)
RELOAD_RETRY = RetryPolicy(
    maximum_attempts=20,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type=CONFIG_REFUSED, non_retryable=True)


def unchanged(config: AgentConfig) -> ConfigApplied:
    return ConfigApplied(
        agent_id=config.id, version=config.version, previous_version=config.version, changed=False
    )


class ConfigChanger:
    """Two locks: ``_changes`` lets one config change run at a time (validating and storing may
    wait out a database outage while events are still decided), and the context's ``step_lock``,
    held by the agent's batch step, makes the switch itself happen between two batches."""

    def __init__(
        self, ctx: AgentContext, authorize: Callable[[ReconfigureRequest], CommandVerdict] | None = None
    ) -> None:
        self._ctx = ctx
        self._authorize = authorize  # who may change the config: decided (and audited) by the agent
        self._changes = asyncio.Lock()

    def validate(self, payload: Any) -> None:
        """The update validator: refuse at once what the agent cannot take."""
        try:
            request = parse_request(payload)
        except ValueError as err:
            raise refused(str(err)) from None
        reason = refusal(self._ctx.state, request)
        if reason is not None:
            raise refused(reason)

    async def apply(self, payload: Any) -> ConfigApplied:
        request = parse_request(payload)
        if self._authorize is not None:
            verdict = self._authorize(request)
            if verdict.reason is not None:
                raise refused(verdict.reason)
            if verdict.authenticated:  # the verified signer is the author, whatever the request says
                request = request.model_copy(update={"author": verdict.actor})
        await workflow.wait_condition(lambda: self._ctx.state.state != AgentState.INITIALIZING)
        async with self._changes:
            reason = refusal(self._ctx.state, request)  # again: the agent may have failed or stopped
            if reason is not None:
                raise refused(reason)
            try:
                return await self._apply(request)
            except ActivityError as err:  # loading, validating or storing gave up: say why
                raise refused(f"config not applied: {cause_message(err)}") from None

    async def _apply(self, request: ReconfigureRequest) -> ConfigApplied:
        old = self._ctx.state.config
        if request.version is not None and request.version <= old.version:
            # Already running it (or newer), e.g. every worker relaying the same notification.
            return unchanged(old)
        candidate, author, comment = request.config, request.author, request.comment
        stored_version = request.version or request.rollback_to
        if stored_version is not None:
            loaded = await self._activity(
                ConfigActivities.load_config, LoadConfigCall(agent_id=old.id, version=stored_version)
            )
            candidate = loaded.config
            if candidate.id != old.id or candidate.type != old.type:
                raise refused(
                    f"config refused: stored version {stored_version} is for {candidate.type} agent "
                    f"{candidate.id!r}, and this is {old.type} agent {old.id!r}"
                )
            if request.version is not None:
                author, comment = loaded.author, loaded.comment
            else:
                comment = comment or f"rollback to version {stored_version}"
        assert candidate is not None  # the request model demands one of the three
        problems = await self._activity(ConfigActivities.validate_config, candidate, self._ctx.hooks_queue())
        if problems:
            self._ctx.audit.config(AuditStep.CONFIG_REFUSED, author, request.version, problems=problems)
            raise ApplicationError(
                "config refused: " + "; ".join(problems), problems, type=CONFIG_REFUSED, non_retryable=True
            )
        if request.version is None and same_settings(candidate, old):
            return unchanged(old)
        new = candidate
        if request.version is None:  # a new config or a rollback: store it as version N+1
            proposal = ConfigProposal(
                config=candidate, author=author or "unknown", comment=comment, request_id=_update_id()
            )
            stored = await self._activity(ConfigActivities.store_config, proposal)
            new = stored.config
        async with self._ctx.step_lock:  # between two batches
            return await self._switch(old, new, author, comment)

    async def _switch(self, old: AgentConfig, new: AgentConfig, author: str, comment: str) -> ConfigApplied:
        try:
            await workflow.execute_activity_method(
                ConfigActivities.reload_agent,
                ReloadCall(old=self._ctx.state.config, new=new),
                task_queue=self._ctx.hooks_queue(),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RELOAD_RETRY,
            )
        except ActivityError as err:
            reason = cause_message(err)
            self._ctx.audit.config(AuditStep.CONFIG_REFUSED, author, new.version, problems=[reason])
            raise refused(
                f"version {new.version} is stored but the agent refused to reload it, so it keeps "
                f"running version {old.version}: {reason}"
            ) from None
        self._ctx.state.config = share_settings(new)  # settings the worker's agents share, not a copy
        self._ctx.intake.config_switched()
        self._ctx.detector_stale = self._ctx.state.has_detector
        publish_state(self._ctx.state)
        self._ctx.audit.config(
            AuditStep.CONFIG_CHANGED, author, new.version, previous_version=old.version, comment=comment
        )
        workflow.logger.info("agent %s now runs config version %d", new.id, new.version)
        return ConfigApplied(agent_id=new.id, version=new.version, previous_version=old.version, changed=True)

    @staticmethod
    async def _activity(method: Callable[[Any, A], Awaitable[R]], arg: A, task_queue: str | None = None) -> R:
        return await workflow.execute_activity_method(
            method,
            arg,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=CONFIG_CHANGE_PATIENCE,
            retry_policy=CONFIG_RETRY,
        )


def _update_id() -> str:
    """This update's id: a retried store finds the version it already stored."""
    info = workflow.current_update_info()
    return f"{workflow.info().workflow_id}/{info.id}" if info else ""
