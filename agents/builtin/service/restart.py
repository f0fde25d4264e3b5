"""Restarting a program once per action, and checking it came back.

The ledger's intent (supervisord's clock and the old pid) is written before the restart, so a retry
after a crash mid-restart can tell whether the program was started since: then it only waits for the
result instead of restarting a second time. A program healthy again by the time the action runs is
left alone, and an automatic restart re-checks the restart limit when it runs. These functions
block: run them in a thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agents.builtin.service.history import RestartHistory
from agents.builtin.service.settings import Service, ServiceSettings
from agents.builtin.service.supervisor import DOWN_STATES, StartFailed, Supervisor, check_http, describe
from agents.ledger import LedgerEntry
from aiops.contracts.models import ActionResult

log = logging.getLogger("aiops.agent.service")


def restart_once(
    entry: LedgerEntry, settings: ServiceSettings, service: Service, history: RestartHistory, escalated: bool
) -> ActionResult:
    """Restart ``service`` for the action of ``entry`` unless an earlier attempt did; record the result."""
    with history.lock(service.name):
        done = entry.done_result()
        if done is not None:
            return done
        return entry.finish(_restart(entry, settings, service, history, escalated))


def _restart(
    entry: LedgerEntry, settings: ServiceSettings, service: Service, history: RestartHistory, escalated: bool
) -> ActionResult:
    supervisor = Supervisor(settings.supervisor)
    name = service.name
    info = supervisor.info(name)
    intent = entry.intent
    if intent is None:
        refused = _needless_or_over_limit(info, settings, service, history, escalated)
        if refused is not None:
            return refused
        # The intent comes first, so that a retry knows a restart may already be under way.
        intent = {"intent_at": int(info["now"]), "pid_before": info.get("pid")}
        entry.intend(intent)
        history.record_restart(name, entry.key)
        redo = True
    else:
        # A retry after a crash mid-restart: was the program started after the intent?
        started = int(info.get("start") or 0) >= int(intent["intent_at"])
        new_process = info.get("pid") != intent.get("pid_before")
        redo = not (started and new_process and info["statename"] in ("STARTING", "RUNNING"))
    calls: list[str] = []
    try:
        if redo:
            calls = supervisor.restart(name, info)
            entry.step("restarted", {"calls": calls})
        else:
            _wait_running(supervisor, name, settings.verify_timeout_seconds)
    except StartFailed as err:
        return ActionResult(success=False, message=str(err), error=str(err), data={"service": name})
    after = supervisor.info(name)
    ok = after["statename"] == "RUNNING"
    done = "restarted" if redo else "an earlier attempt had already restarted"
    return ActionResult(
        success=ok,
        message=f"{done} {name}: {describe(after)}",
        error=None if ok else f"{name} is {after['statename']} after the restart",
        data={
            "service": name,
            "restarted": True,
            "calls": calls,
            "pid_before": intent.get("pid_before"),
            "pid_after": after.get("pid"),
        },
    )


def _needless_or_over_limit(
    info: dict[str, Any],
    settings: ServiceSettings,
    service: Service,
    history: RestartHistory,
    escalated: bool,
) -> ActionResult | None:
    name = service.name
    if info["statename"] == "RUNNING" and check_http(service).ok:
        return ActionResult(
            success=True,
            message=f"{name} is healthy again ({describe(info)}): nothing restarted",
            data={"service": name, "restarted": False, "pid": info.get("pid")},
        )
    recent = history.restarts(name)
    if not escalated and len(recent) >= settings.max_restarts:
        return ActionResult(
            success=False,
            message=(
                f"not restarted: {len(recent)} restart(s) of {name} in the last "
                f"{settings.restart_window_seconds:g}s reached the limit after the decision"
            ),
            error="restart limit reached; the next event escalates to a person",
            data={"service": name, "restarted": False},
        )
    return None


def _wait_running(supervisor: Supervisor, name: str, within: float) -> None:
    deadline = time.monotonic() + within
    while supervisor.info(name)["statename"] == "STARTING" and time.monotonic() < deadline:
        time.sleep(0.2)


def healthy_within(settings: ServiceSettings, service: Service) -> bool:
    """Whether the program reaches RUNNING with a healthy endpoint within the verify timeout."""
    supervisor = Supervisor(settings.supervisor)
    deadline = time.monotonic() + settings.verify_timeout_seconds
    while True:
        info = supervisor.info(service.name)
        health = check_http(service) if info["statename"] == "RUNNING" else None
        if health is not None and health.ok:
            return True
        if time.monotonic() > deadline or info["statename"] in DOWN_STATES:
            log.warning(
                "verify %s: %s%s", service.name, describe(info), f"; {health.detail}" if health else ""
            )
            return False
        time.sleep(0.2)
