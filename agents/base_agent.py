"""BaseAgent: the seed's agent contract, whose hooks the framework runs as activities.

Agent authors override the ``_*_specific`` hooks; the framework only ever calls
the public methods, which add the lifecycle checks, logging, timing and error
bookkeeping the seed promises. None of this runs in workflow code.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from enum import StrEnum

from agents.errors import AgentLifecycleError, InvalidAgentConfigError, NonRetryableActionError
from agents.models import (
    ActionResult,
    AgentAction,
    AgentConfig,
    EventType,
    HealthReport,
    Plan,
    SystemEvent,
)


class AgentLifecycle(StrEnum):
    CREATED = "created"
    INITIALIZED = "initialized"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class BaseAgent(ABC):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.lifecycle = AgentLifecycle.CREATED
        self.logger = logging.getLogger(f"aiops.agent.{config.type}")
        self.events_processed = 0
        self.actions_executed = 0
        self.error_count = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.last_activity_at: float | None = None

    @property
    def agent_id(self) -> str:
        return self.config.id

    # ----- lifecycle -------------------------------------------------------

    async def initialize(self) -> None:
        if self.lifecycle not in (AgentLifecycle.CREATED, AgentLifecycle.STOPPED):
            return
        problems = self.validate_config(self.config)
        if problems:
            raise InvalidAgentConfigError(problems)
        await self._guarded("initialize", self._initialize_agent_specific())
        self.lifecycle = AgentLifecycle.INITIALIZED

    async def start(self) -> None:
        if self.lifecycle == AgentLifecycle.RUNNING:
            return
        if self.lifecycle != AgentLifecycle.INITIALIZED:
            raise AgentLifecycleError(
                f"agent {self.agent_id} must be initialized before start (is {self.lifecycle})"
            )
        await self._guarded("start", self._start_agent_specific())
        self.lifecycle = AgentLifecycle.RUNNING
        self.started_at = time.time()

    async def stop(self) -> None:
        if self.lifecycle in (AgentLifecycle.STOPPED, AgentLifecycle.CREATED):
            self.lifecycle = AgentLifecycle.STOPPED
            return
        await self._guarded("stop", self._stop_agent_specific())
        self.lifecycle = AgentLifecycle.STOPPED

    # ----- work ------------------------------------------------------------

    def get_subscribed_event_types(self) -> list[EventType]:
        return [EventType(t) for t in self._get_subscribed_event_types()]

    async def process_event(self, event: SystemEvent) -> AgentAction | None:
        self._require_running("process_event")
        self.logger.debug("processing event %s (%s)", event.id, event.type)
        action = await self._guarded("process_event", self._process_event_specific(event))
        self.events_processed += 1
        return action

    async def plan(self, action: AgentAction) -> Plan | None:
        self._require_running("plan")
        return await self._guarded("plan", self._plan_specific(action))

    async def execute_action(self, action: AgentAction) -> ActionResult:
        self._require_running("execute_action")
        self.logger.info("executing action %s (%s)", action.id, action.type)
        result = await self._guarded("execute_action", self._execute_action_specific(action))
        if not isinstance(result, ActionResult):
            # Non-retryable: the hook has already run its side effect once.
            raise NonRetryableActionError(
                f"{type(self).__name__}._execute_action_specific must return ActionResult, "
                f"got {type(result).__name__}"
            )
        self.actions_executed += 1
        if not result.success:
            self._record_error(result.error or result.message)
        return result

    async def verify(self, action: AgentAction, result: ActionResult) -> bool:
        self._require_running("verify")
        return bool(await self._guarded("verify", self._verify_specific(action, result)))

    async def rollback(self, action: AgentAction) -> ActionResult | None:
        self._require_running("rollback")
        return await self._guarded("rollback", self._rollback_specific(action))

    async def reload_config(self, new_config: AgentConfig) -> None:
        problems = self.validate_config(new_config)
        if problems:
            raise InvalidAgentConfigError(problems)
        old = self.config
        await self._guarded("reload_config", self._reload_config_specific(old, new_config))
        self.config = new_config

    async def health_check(self) -> HealthReport:
        checks = await self._guarded("health_check", self._health_check_specific())
        healthy = self.lifecycle == AgentLifecycle.RUNNING and all(checks.values())
        return HealthReport(healthy=healthy, checks=checks, message=self.last_error or "")

    def validate_config(self, config: AgentConfig) -> list[str]:
        """Problems with ``config`` for this agent type; empty when it is usable."""
        return list(self._validate_config_specific(config))

    # ----- hooks an agent author fills ---------------------------------------

    async def _initialize_agent_specific(self) -> None:  # noqa: B027 - optional hook
        pass

    async def _start_agent_specific(self) -> None:  # noqa: B027 - optional hook
        pass

    async def _stop_agent_specific(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None: ...

    @abstractmethod
    async def _execute_action_specific(self, action: AgentAction) -> ActionResult: ...

    async def _reload_config_specific(  # noqa: B027 - optional hook
        self, old_config: AgentConfig, new_config: AgentConfig
    ) -> None:
        pass

    @abstractmethod
    def _get_subscribed_event_types(self) -> list[EventType]: ...

    async def _plan_specific(self, action: AgentAction) -> Plan | None:
        return None

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        return True

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        return None

    async def _health_check_specific(self) -> dict[str, bool]:
        return {}

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        return []

    # ----- plumbing ----------------------------------------------------------

    def has_hook(self, name: str) -> bool:
        """Whether this agent class overrides the optional hook ``name``."""
        return getattr(type(self), name) is not getattr(BaseAgent, name)

    def _require_running(self, what: str) -> None:
        if self.lifecycle != AgentLifecycle.RUNNING:
            raise AgentLifecycleError(f"agent {self.agent_id} cannot {what} while {self.lifecycle.value}")

    async def _guarded(self, hook: str, awaitable):  # type: ignore[no-untyped-def]
        self.last_activity_at = time.time()
        try:
            return await awaitable
        except Exception as err:
            self._record_error(f"{hook}: {err}")
            self.logger.exception("agent %s hook %s failed", self.agent_id, hook)
            raise

    def _record_error(self, message: str) -> None:
        self.error_count += 1
        self.last_error = message
