"""BaseAgent: the seed's agent contract, whose hooks the framework runs as activities.

Agent authors override the ``_*_specific`` hooks; the framework only ever calls
the public methods, which add the lifecycle checks, logging, timing and error
bookkeeping the seed promises. None of this runs in workflow code.

What every hook can rely on, and must allow for:

- **Where.** In a worker process, inside an activity, on an instance the worker
  builds from the agent's config (``AgentInstances``) and keeps per agent id. Any
  worker on the task queue may run any hook, so an instance must not assume it
  saw earlier calls: keep durable state in the system you operate, not in memory.
- **How often.** At least once. Temporal retries an activity after a failure, a
  timeout or a worker crash, so every hook may run again with the same input.
  A hook with a side effect must be idempotent: ``action.id`` is stable for one
  action across every retry, worker and replay; use it as the idempotency key.
- **Errors.** ``NonRetryableActionError``, ``InvalidAgentConfigError`` and
  ``UnknownAgentTypeError`` stop the retries at once; any other exception is
  retried by the calling workflow's retry policy (``AgentConfig.retry`` for
  execute), then recorded as the step's failure.
- **Secrets.** ``self.config`` holds resolved secret references; never return
  them in a result, a plan or an exception message (those reach history).
- **Settings.** Declare a pydantic model (subclass ``agents.settings.AgentSettings``) as the
  class's type parameter, ``class DiskAgent(BaseAgent[DiskSettings])``: ``BaseAgent`` validates
  ``config.settings`` against it once per config and hands the hooks a typed ``self.settings``.
  Without one, settings stay free-form (``FreeFormSettings``) as they always were.
- **Effectively once.** ``agents.ledger.ActionLedger`` records, per ``action.id``, the intent,
  the steps done and the final result, so a retried ``_execute_action_specific`` can answer with
  the first result or resume where a crashed attempt stopped.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from enum import StrEnum
from typing import Any, ClassVar, Generic, overload

from pydantic import BaseModel
from typing_extensions import TypeVar

from agents.settings import FreeFormSettings, parse_settings
from aiops.contracts.config import AgentConfig
from aiops.contracts.errors import AgentLifecycleError, InvalidAgentConfigError, NonRetryableActionError
from aiops.contracts.models import ActionResult, AgentAction, EventType, HealthReport, Plan, SystemEvent

T = TypeVar("T")
# Unparameterized, an agent's settings are ``Any`` to the type checker (agents that parse their own
# settings keep working) and ``FreeFormSettings`` at run time.
S = TypeVar("S", bound=BaseModel, default=Any)
M = TypeVar("M", bound=BaseModel)


class AgentLifecycle(StrEnum):
    CREATED = "created"
    INITIALIZED = "initialized"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class _SettingsAttribute:
    """``agent.settings``: the validated settings, typed by the agent's parameter ``S``.

    A non-data descriptor rather than a property, so that an agent that parses its own settings
    and assigns ``self.settings`` (the older style) still may: its value shadows this one."""

    @overload
    def __get__(self, agent: None, owner: type[Any]) -> _SettingsAttribute: ...
    @overload
    def __get__(self, agent: BaseAgent[M], owner: type[Any]) -> M: ...
    def __get__(self, agent: BaseAgent[Any] | None, owner: type[Any]) -> Any:
        if agent is None:
            return self
        if agent._settings is None:
            raise InvalidAgentConfigError(agent._settings_problems)
        return agent._settings


class BaseAgent(ABC, Generic[S]):
    """The agent contract; ``S`` is the agent type's settings model (see the module docstring)."""

    settings = _SettingsAttribute()
    """``self.config.settings`` as the agent type's settings model, validated (typed ``S``)."""

    settings_model: ClassVar[type[BaseModel]] = FreeFormSettings
    """Set from the class's type parameter (``BaseAgent[DiskSettings]``); rarely set by hand."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            args: tuple[Any, ...] = getattr(base, "__args__", ())
            if getattr(base, "__origin__", None) is not BaseAgent or not isinstance(args[0], type):
                continue  # unparameterized, or still generic (a TypeVar): keep the inherited model
            if not issubclass(args[0], BaseModel):
                raise TypeError(f"{cls.__name__}: BaseAgent[{args[0].__name__}] needs a pydantic model")
            if "settings_model" not in cls.__dict__:
                cls.settings_model = args[0]

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        # Validated once per config; bad settings are reported by validate_config and initialize,
        # and raise InvalidAgentConfigError (not retryable) if a hook asks for them anyway.
        self._settings, self._settings_problems = self._parse_settings(config)
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

    async def detect(self) -> list[SystemEvent]:
        """Run the agent's detector once; what it finds is delivered to the agent as events."""
        self._require_running("detect")
        found = await self._guarded("detect", self._detect_specific())
        return list(found)

    def has_detector(self) -> bool:
        return self.has_hook("_detect_specific")

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
        settings, problems = self._parse_settings(new_config)
        problems = problems or self._own_problems(new_config, settings)
        if problems:
            raise InvalidAgentConfigError(problems)
        old, old_settings = self.config, self._settings
        # The hook already sees the new version as self.config / self.settings; a refusal restores.
        self.config, self._settings, self._settings_problems = new_config, settings, []
        try:
            await self._guarded("reload_config", self._reload_config_specific(old, new_config))
        except BaseException:
            self.config, self._settings, self._settings_problems = old, old_settings, []
            raise

    async def health_check(self) -> HealthReport:
        checks = await self._guarded("health_check", self._health_check_specific())
        healthy = self.lifecycle == AgentLifecycle.RUNNING and all(checks.values())
        return HealthReport(healthy=healthy, checks=checks, message=self.last_error or "")

    def validate_config(self, config: AgentConfig) -> list[str]:
        """Problems with ``config`` for this agent type; empty when it is usable. The settings
        model's problems come first; the agent's own checks run only on valid settings."""
        if config is self.config:
            settings, problems = self._settings, self._settings_problems
        else:
            settings, problems = self._parse_settings(config)
        return problems or self._own_problems(config, settings)

    # ----- hooks an agent author fills ---------------------------------------

    async def _initialize_agent_specific(self) -> None:
        """Connect to what the agent operates. Runs when a worker first builds this instance:
        at agent start (the ``initialize_agent`` activity, retried for a few minutes, then the
        agent fails with the error) and again on any other worker that later needs the agent.
        Raise to refuse; it may run more than once per worker process lifetime."""

    async def _start_agent_specific(self) -> None:
        """Start background work after ``_initialize_agent_specific``, on the same occasions and
        as often; keep it cheap and idempotent. Errors are handled as for initialize."""

    async def _stop_agent_specific(self) -> None:
        """Release resources. Runs once per worker holding an instance when the agent stops
        (the ``stop_agent`` activity, up to 3 attempts).
        Errors are logged and noted in the agent's recent errors; the agent stops anyway."""

    @abstractmethod
    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        """Decide what to do about one event: an ``AgentAction`` to propose, or None.

        Runs in the ``decide_events`` activity (a local activity by default) for each
        subscribed event, at least once: a retried batch, or a replay after a worker
        crash, calls it again for the same event, so it must have no side effect. The
        framework replaces ``action.id`` with one derived from agent and event, sets
        ``agent_id``/``event_id``, and hands the action to the approval policy. An
        exception is recorded as a decision error for this event (retried up to 3
        times if transient); other events of the batch are unaffected."""

    @abstractmethod
    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        """Carry out an approved action and return what happened.

        Runs in the ``execute_action_logged`` activity only after the policy and every
        required approval allow it, with the configured retry policy and heartbeats:
        AT LEAST ONCE, possibly on several workers (a crashed worker's attempt is retried
        elsewhere). Make the side effect idempotent with ``action.id`` as its key (check
        whether that key's change already happened before doing it). Return
        ``ActionResult(success=False, ...)`` for a failure retrying cannot fix, or raise
        ``NonRetryableActionError``; any other exception is retried."""

    async def _reload_config_specific(self, old_config: AgentConfig, new_config: AgentConfig) -> None:
        """Take a new config version without a restart. Runs in the ``reload_agent`` activity
        between two batches, after validation and storage, at least once (retried for a few
        minutes); ``self.config`` and ``self.settings`` are already the new version. Raise
        ``InvalidAgentConfigError`` to refuse: the agent keeps the old version
        and the caller is told why. Other workers pick the new config up lazily."""

    @abstractmethod
    def _get_subscribed_event_types(self) -> list[EventType]:
        """The event types this agent decides; others are counted as filtered and audited.
        Asked once at agent start (``initialize_agent``); must not do I/O."""

    async def _detect_specific(self) -> list[SystemEvent]:
        """Look at the system and report what needs attention, as events for this agent.

        Optional: an agent type that fills it gets a scheduled detector (every
        ``runtime.detect_every_seconds``, one Temporal Schedule per agent) that runs it in the
        ``detect`` activity on any worker and delivers the events to the agent, which decides
        them like any other. It must be read-only and may run more than once per tick. Give each
        event an id that is stable for one occurrence of one condition (for example derived
        from the resource and a digest of what was found), so repeated detections of the same
        condition are deduplicated by the agent instead of proposing the same fix again. An
        exception is recorded as a failed detection; the next tick tries again."""
        return []

    async def _plan_specific(self, action: AgentAction) -> Plan | None:
        """A dry run: what executing ``action`` would change. Runs in the ``plan_action``
        activity before any approval wait, at least once, and must not change anything.
        The plan is the evidence an approver reads and its digest pins what they approved.
        None means "no dry run" (the default). An exception that survives the retries
        fails the action before execution: the framework never acts blind."""
        return None

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        """Check the system after a successful execution. Runs in the ``verify_action``
        activity, at least once, read-only. False (or an exception after the retries)
        triggers ``_rollback_specific``. The default trusts the execution's result."""
        return True

    async def _rollback_specific(self, action: AgentAction) -> ActionResult | None:
        """Undo ``action`` after a failed verification (compensation). Runs in the
        ``rollback_action`` activity, at least once: idempotent by ``action.id`` like
        execute. None (the default) means the agent cannot roll back; the action then
        ends as failed."""
        return None

    async def _health_check_specific(self) -> dict[str, bool]:
        """Named checks of the agent's dependencies (``{"api reachable": True}``). Runs on a
        worker every health-monitor pass (a minute by default) under a short timeout; any
        False makes the agent degraded, an exception is reported as a failing check."""
        return {}

    def _validate_config_specific(self, config: AgentConfig) -> list[str]:
        """Problems this agent type sees in ``config`` (empty when usable). Runs in the
        ``validate_config`` activity before a config version is stored, and when an instance
        is built. It must change nothing; it may read (say, check that a configured path exists
        on this worker). A non-empty answer refuses the config with these messages; an exception
        refuses it too."""
        return []

    def _validate_settings_specific(self, settings: S) -> list[str]:
        """Problems the settings model cannot see: what this worker finds (a path that does not
        exist, a socket that is missing). Called with already valid settings, at the same times
        and under the same rules as ``_validate_config_specific``; word each problem as
        ``settings.<path>: ...``."""
        return []

    # ----- plumbing ----------------------------------------------------------

    def _parse_settings(self, config: AgentConfig) -> tuple[S | None, list[str]]:
        parsed, problems = parse_settings(self.settings_model, config.settings, config.type)
        return parsed, problems  # type: ignore[return-value]  # settings_model is S (__init_subclass__)

    def _own_problems(self, config: AgentConfig, settings: S | None) -> list[str]:
        own = self._validate_settings_specific(settings) if settings is not None else []
        return [*own, *self._validate_config_specific(config)]

    def has_hook(self, name: str) -> bool:
        """Whether this agent class overrides the optional hook ``name``."""
        return getattr(type(self), name) is not getattr(BaseAgent, name)

    def _require_running(self, what: str) -> None:
        if self.lifecycle != AgentLifecycle.RUNNING:
            raise AgentLifecycleError(f"agent {self.agent_id} cannot {what} while {self.lifecycle.value}")

    async def _guarded(self, hook: str, awaitable: Awaitable[T]) -> T:
        self.last_activity_at = time.time()
        try:
            return await awaitable
        except NonRetryableActionError as err:  # the agent's own verdict: expected, one line, no traceback
            self._record_error(f"{hook}: {err}")
            self.logger.warning("agent %s hook %s failed, not retryable: %s", self.agent_id, hook, err)
            raise
        except Exception as err:
            self._record_error(f"{hook}: {err}")
            self.logger.exception("agent %s hook %s failed", self.agent_id, hook)
            raise

    def _record_error(self, message: str) -> None:
        self.error_count += 1
        self.last_error = message
