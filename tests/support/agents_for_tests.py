"""Agents with controllable behaviour, registered for the tests only.

Their side effects go to ``LEDGER`` (in-process workers) or, when
``AIOPS_TEST_LEDGER_DIR`` is set, to one file per action (worker subprocesses),
so a test can count exactly how often each hook really ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import defaultdict
from pathlib import Path

from agents import (
    ActionResult,
    ActionType,
    AgentAction,
    BaseAgent,
    EventType,
    NonRetryableActionError,
    Plan,
    RiskLevel,
    SystemEvent,
    register_agent,
)

LEDGER: dict[str, list[str]] = defaultdict(list)


def record(kind: str, key: str) -> None:
    LEDGER[kind].append(key)
    folder = os.environ.get("AIOPS_TEST_LEDGER_DIR")
    if folder:
        with (Path(folder) / f"{kind}.log").open("a") as f:
            f.write(key + "\n")


def _action(agent: BaseAgent, event: SystemEvent) -> AgentAction:
    return AgentAction(
        id=f"ignored-{event.id}",
        agent_id=agent.agent_id,
        type=ActionType.RUN_COMMAND,
        description=f"{event.data.get('do', 'handle')} for {event.source}",
        target_resources=[event.source],
        risk_level=RiskLevel(event.data.get("risk", "low")),
        requested_by=event.data.get("requested_by"),
    )


def _until_exists(path: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@register_agent("recorder")
class RecorderAgent(BaseAgent):
    """Records every decided event; proposes an action only when the event asks for one."""

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        record("decided", event.id)
        if event.data.get("boom"):
            raise RuntimeError(f"cannot decide {event.id}")
        return _action(self, event) if event.data.get("act") else None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        record("executed", action.id)
        return ActionResult(success=True, message=f"did {action.description}")

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT, EventType.ALERT, EventType.AGENT_HEALTH]


@register_agent("scripted")
class ScriptedAgent(BaseAgent):
    """Behaviour chosen per event: ``data.fail_times``, ``fatal``, ``verify``, ``sleep``, and
    ``hold_until`` (a path: execute runs until that file exists, at most 60 s, so a test can look
    at an action while it executes)."""

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        action = _action(self, event)
        action.parameters = {k: v for k, v in event.data.items() if k not in ("risk", "requested_by")}
        return action

    async def _plan_specific(self, action: AgentAction) -> Plan:
        if action.parameters.get("plan_fails"):
            raise NonRetryableActionError("cannot reach the API to build the plan")
        return Plan(summary=f"would run {action.description}", changes=[f"~ {action.target_resources[0]}"])

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        p = action.parameters
        record("attempt", action.id)
        if p.get("fatal"):
            raise NonRetryableActionError("the target does not exist")
        if sum(1 for a in LEDGER["attempt"] if a == action.id) <= int(p.get("fail_times", 0)):
            raise RuntimeError("transient failure")
        if p.get("sleep"):
            await asyncio.sleep(float(p["sleep"]))
        if p.get("hold_until"):
            await asyncio.to_thread(_until_exists, Path(str(p["hold_until"])), 60.0)
        record("executed", action.id)
        return ActionResult(
            success=True, message=f"ran {action.description}", data={"plan": p.get("approved_plan")}
        )

    async def _verify_specific(self, action: AgentAction, result: ActionResult) -> bool:
        return action.parameters.get("verify", True) is True

    async def _rollback_specific(self, action: AgentAction) -> ActionResult:
        record("rolled_back", action.id)
        return ActionResult(success=True, message="restored previous state")

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.INFRASTRUCTURE_DRIFT]


@register_agent("init_fails")
class InitFailsAgent(BaseAgent):
    def _validate_config_specific(self, config) -> list[str]:  # type: ignore[no-untyped-def]
        return ["settings.endpoint is required"] if "endpoint" not in config.settings else []

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True)

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]


@register_agent("tunable")
class TunableAgent(BaseAgent):
    """Config-driven: ``settings.mode`` "act" proposes actions; validates and records reloads.

    Its execute hook records a digest of the integration token it was given, so a
    test can tell the secret reference was resolved without the secret itself
    ever leaving the worker.
    """

    def _validate_config_specific(self, config) -> list[str]:  # type: ignore[no-untyped-def]
        problems = []
        if config.settings.get("explode"):
            raise KeyError("a validation hook with a bug")
        limit = config.settings.get("limit", 10)
        if not isinstance(limit, int) or limit < 1:
            problems.append("settings.limit must be a positive integer")
        if config.settings.get("mode", "observe") not in ("observe", "act"):
            problems.append("settings.mode must be 'observe' or 'act'")
        return problems

    async def _reload_config_specific(self, old, new) -> None:  # type: ignore[no-untyped-def]
        record("reloaded", f"{old.version}->{new.version}:{new.settings.get('mode', 'observe')}")

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        mode = self.config.settings.get("mode", "observe")
        record("decided", f"{event.id}@v{self.config.version}:{mode}")
        return _action(self, event) if mode == "act" else None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        token = next((i.config["token"] for i in self.config.integrations if "token" in i.config), None)
        record("token_seen", hashlib.sha256(token.encode()).hexdigest() if token else "none")
        return ActionResult(success=True, message=f"acted with limit {self.config.settings.get('limit')}")

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT, EventType.INFRASTRUCTURE_DRIFT]


@register_agent("ailing")
class AilingAgent(BaseAgent):
    """Works, but its health check says its upstream is down (``settings.upstream_ok`` flips it)."""

    async def _health_check_specific(self) -> dict[str, bool]:
        return {"upstream": bool(self.config.settings.get("upstream_ok", False)), "queue": True}

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        return None

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        return ActionResult(success=True)

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.ALERT]


@register_agent("watching")
class WatchingAgent(BaseAgent):
    """Has a detector: reports ``settings.finding`` (a condition name) while it is set."""

    async def _detect_specific(self) -> list[SystemEvent]:
        finding = self.config.settings.get("finding")
        record("detected", str(finding))
        if not finding:
            return []
        return [
            SystemEvent(
                id=f"found-{self.agent_id}-{finding}",  # one id per occurrence: repeats are duplicates
                type=EventType.INFRASTRUCTURE_DRIFT,
                source=f"detector/{self.agent_id}",
                severity="low",
                data={"finding": finding},
            )
        ]

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        record("decided", event.id)
        return _action(self, event)

    async def _execute_action_specific(self, action: AgentAction) -> ActionResult:
        record("executed", action.id)
        return ActionResult(success=True, message="fixed")

    def _get_subscribed_event_types(self) -> list[EventType]:
        return [EventType.INFRASTRUCTURE_DRIFT]


@register_agent("oversized")
class OversizedAgent(RecorderAgent):
    """Proposes an action whose parameters carry ``data.size`` bytes (a runaway tool argument);
    without ``size`` it proposes an ordinary action."""

    async def _process_event_specific(self, event: SystemEvent) -> AgentAction | None:
        record("decided", event.id)
        action = _action(self, event)
        size = int(event.data.get("size", 0))
        if size:
            action.parameters = {"path": "x" * size}
        return action
