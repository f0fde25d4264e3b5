"""Applying a config change to a running agent, one change at a time, between two batches.

Validate on a worker (pydantic, the agent type's hook, secret references) →
store as version N+1 → hold new batches and wait for the one in flight → the
agent's reload hook → switch. A refusal at any step leaves the stored
versions and the agent as they were, and says why. The request models and the
validator's rules live in ``config_change.py``; this is the procedure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        LOAD_CONFIG,
        NON_RETRYABLE_AGENT_ERRORS,
        RELOAD_AGENT,
        STORE_CONFIG,
        VALIDATE_CONFIG,
        AuditStep,
        ConfigProposal,
        LoadConfigCall,
        ReloadCall,
        StoredConfig,
    )
    from agents.config_diff import same_settings
    from agents.models import AgentConfig
    from workflows.agent_audit import AgentAudit
    from workflows.agent_state import AgentRunState, AgentState
    from workflows.config_change import ConfigApplied, ReconfigureRequest, parse_request, refusal
    from workflows.failures import cause_message

# How long a config change waits for the database before it gives up (the caller is waiting).
CONFIG_CHANGE_PATIENCE = timedelta(minutes=10)
CONFIG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # a database outage delays a config change; it never loses it
    non_retryable_error_types=[
        "NoConfigStore",
        "UnknownConfigVersion",
        "InvalidAgentConfigError",
        "ConfigRefused",
    ],
)
RELOAD_RETRY = RetryPolicy(
    maximum_attempts=20,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
)


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type="ConfigRefused", non_retryable=True)


def unchanged(config: AgentConfig) -> ConfigApplied:
    return ConfigApplied(
        agent_id=config.id, version=config.version, previous_version=config.version, changed=False
    )


class ConfigChanger:
    def __init__(
        self,
        state: Callable[[], AgentRunState],
        audit: AgentAudit,
        deciding: Callable[[], bool],
        switched: Callable[[AgentConfig], None],
    ) -> None:
        self._state = state
        self._audit = audit
        self._deciding = deciding
        self._switched = switched
        self._busy = False
        self.switching = False  # the agent takes no new batch while this is set

    def validate(self, payload: Any) -> None:
        """The update validator: refuse at once what the agent cannot take."""
        try:
            request = parse_request(payload)
        except ValueError as err:
            raise refused(str(err)) from None
        reason = refusal(self._state(), request)
        if reason is not None:
            raise refused(reason)

    async def apply(self, payload: Any) -> ConfigApplied:
        request = parse_request(payload)
        await workflow.wait_condition(
            lambda: not self._busy and self._state().state != AgentState.INITIALIZING
        )
        reason = refusal(self._state(), request)  # again: the agent may have failed or stopped meanwhile
        if reason is not None:
            raise refused(reason)
        self._busy = True
        try:
            return await self._apply(request)
        except ActivityError as err:  # loading, validating or storing gave up: say why
            raise refused(f"config not applied: {cause_message(err)}") from None
        finally:
            self._busy = False

    async def _apply(self, request: ReconfigureRequest) -> ConfigApplied:
        old = self._state().config
        if request.version is not None and request.version <= old.version:
            # Already running it (or newer), e.g. every worker relaying the same notification.
            return unchanged(old)
        candidate, author, comment = request.config, request.author, request.comment
        stored_version = request.version or request.rollback_to
        if stored_version is not None:
            loaded: StoredConfig = await self._activity(
                LOAD_CONFIG, LoadConfigCall(agent_id=old.id, version=stored_version), StoredConfig
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
        problems: list[str] = await self._activity(VALIDATE_CONFIG, candidate, list[str])
        if problems:
            self._audit.config(AuditStep.CONFIG_REFUSED, author, request.version, problems=problems)
            raise ApplicationError(
                "config refused: " + "; ".join(problems), problems, type="ConfigRefused", non_retryable=True
            )
        if request.version is None and same_settings(candidate, old):
            return unchanged(old)
        new = candidate
        if request.version is None:  # a new config or a rollback: store it as version N+1
            proposal = ConfigProposal(
                config=candidate, author=author or "unknown", comment=comment, request_id=_update_id()
            )
            stored: StoredConfig = await self._activity(STORE_CONFIG, proposal, StoredConfig)
            new = stored.config
        self.switching = True
        try:
            await workflow.wait_condition(lambda: not self._deciding())  # between two events
            return await self._switch(old, new, author, comment)
        finally:
            self.switching = False

    async def _switch(self, old: AgentConfig, new: AgentConfig, author: str, comment: str) -> ConfigApplied:
        try:
            await workflow.execute_activity(
                RELOAD_AGENT,
                ReloadCall(old=self._state().config, new=new),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RELOAD_RETRY,
            )
        except ActivityError as err:
            reason = cause_message(err)
            self._audit.config(AuditStep.CONFIG_REFUSED, author, new.version, problems=[reason])
            raise refused(
                f"version {new.version} is stored but the agent refused to reload it, so it keeps "
                f"running version {old.version}: {reason}"
            ) from None
        self._state().config = new
        self._switched(new)
        self._audit.config(
            AuditStep.CONFIG_CHANGED, author, new.version, previous_version=old.version, comment=comment
        )
        workflow.logger.info("agent %s now runs config version %d", new.id, new.version)
        return ConfigApplied(agent_id=new.id, version=new.version, previous_version=old.version, changed=True)

    @staticmethod
    async def _activity(name: str, arg: Any, result_type: Any) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=CONFIG_CHANGE_PATIENCE,
            retry_policy=CONFIG_RETRY,
        )


def _update_id() -> str:
    """This update's id: a retried store finds the version it already stored."""
    info = workflow.current_update_info()
    return f"{workflow.info().workflow_id}/{info.id}" if info else ""
