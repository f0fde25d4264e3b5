"""Replay recorded histories against today's workflow code: a non-deterministic change fails here.

``tests/histories`` (and ``histories/llm``) hold the current generation of every workflow's
histories, recorded by ``tests/record_histories.py``, ``record_monitor_histories.py`` and
``record_llm_histories.py``. A change to workflow code either replays all of them, or guards its
new path with ``workflow.patched(id)`` and records its histories beside them; the patch later
becomes ``workflow.deprecate_patch(id)`` and is then removed (docs/deploy.md, "Versioning
workflow code").
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

# This module defines a workflow, so the sandbox imports it again: activity modules (and the
# C extensions under them, like asyncpg's) must come through from outside, never be re-imported.
with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from activities.audit_activities import AuditActivities
    from activities.detector_activities import DetectorActivities

from aiops.contracts import action as action_contract
from aiops.contracts import agent as agent_contract
from aiops.contracts.action import ActionInput, ActionRecord
from workflows.action.workflow import ActionWorkflow
from workflows.agent.detector import DetectorWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.health_monitor import HealthMonitorWorkflow
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
LLM_HISTORIES = sorted((Path(__file__).parent / "histories" / "llm").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    workflow_id = next(
        e["workflowExecutionStartedEventAttributes"].get("workflowId", path.stem)
        for e in data["events"]
        if "workflowExecutionStartedEventAttributes" in e
    )
    return WorkflowHistory.from_json(workflow_id, data)


# The current generation: every workflow's histories, recorded together (tests/record_*.py).
GENERATION = "g1_"
DIR = Path(__file__).parent / "histories"


def text(name: str) -> str:
    return (DIR / f"{GENERATION}{name}.json").read_text()


def test_histories_are_present() -> None:
    """The current generation covers today's code paths, so a change to them must replay these or
    be patched (docs/deploy.md, "Versioning workflow code")."""
    names = {p.stem for p in HISTORIES}
    assert {
        f"{GENERATION}{n}"
        for n in (
            "agent_lifecycle", "agent_continue_as_new", "agent_failed_init", "agent_detector", "detector_run",
            "agent_incidents", "agent_signed_commands", "agent_bounded_task", "agent_upgrade",
            "agent_health_summary", "monitor_pass", "action_auto", "action_signal_approval",
            "action_update_quorum", "action_rejected", "action_rolled_back", "action_plan_failed",
            "action_signed_notified", "action_confirmed_holds", "action_started_executing",
        )
    } <= names  # fmt: skip
    # One generation, no patches: nothing in it was recorded by code asking workflow.patched. A
    # patched path is recorded beside it (tests/record_storm_history.py: patched_agent_storm).
    assert [p.name for p in HISTORIES if p.stem.startswith(GENERATION) and patch_ids(p)] == []
    assert patch_ids(DIR / "patched_agent_storm.json") == ["decide-storm-by-activity"]
    # tests/record_action_start_history.py: actions started from the agent's worker, not as children
    assert patch_ids(DIR / "patched_agent_action_start.json") == ["start-actions-from-worker"]
    # tests/record_unreported_ends_history.py: a monitor pass tells an agent of a terminated action
    assert patch_ids(DIR / "patched_monitor_unreported_ends.json") == ["report-unreported-action-ends"]
    assert '"report_unreported_ends"' in markers("patched_monitor_unreported_ends.json")
    # tests/record_publish_after_dispatch_history.py: the quorum's last approval is shown a task
    # after execute is dispatched (workflows/action/execution.py, PUBLISH_AFTER_DISPATCH)
    dispatch = DIR / "patched_action_publish_after_dispatch.json"
    assert patch_ids(dispatch) == ["publish-executing-after-dispatch"]
    events = json.loads(dispatch.read_text())["events"]
    kinds = [e["eventType"] for e in events]
    execute = scheduled(events, "execute_action")
    approving = max(i for i, kind in enumerate(kinds[:execute]) if kind == "EVENT_TYPE_WORKFLOW_TASK_STARTED")
    assert "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" not in kinds[approving:execute]
    dispatched = scheduled(events, "execute_dispatched")
    assert dispatched == execute + 1
    done = {e["activityTaskCompletedEventAttributes"]["scheduledEventId"]: i for i, e in enumerate(events)
            if "activityTaskCompletedEventAttributes" in e}  # fmt: skip
    shown = next(
        i
        for i, e in enumerate(events)
        if "AiopsActionStatus"
        in e.get("upsertWorkflowSearchAttributesEventAttributes", {})
        .get("searchAttributes", {})
        .get("indexedFields", {})
        and i > dispatched
    )  # shown after the no-op ran, while execute still ran
    assert done[events[dispatched]["eventId"]] < shown < done[events[execute]["eventId"]]
    # A dry run planned here: its first task upserts anyway, so executing goes with it, no no-op.
    here = DIR / "patched_action_planned_here.json"
    assert patch_ids(here) == ["publish-executing-after-dispatch"]
    assert '"plan_action_here"' in markers(here.name) and '"execute_dispatched"' not in here.read_text()
    assert sum(f'"{AuditActivities.record_audit.__name__}"' in p.read_text() for p in HISTORIES) >= 6
    lifecycle = text("agent_lifecycle")
    assert agent_contract.RECONFIGURE in lifecycle and agent_contract.INTAKE in lifecycle
    assert '.recorder"' in lifecycle  # agent code runs on the recorder type's own queue
    started = markers(f"{GENERATION}agent_lifecycle.json")  # one local activity registers and starts
    assert '"start_agent"' in started and '"action_outcome"' in started
    assert '"register_config"' not in lifecycle
    # The start's local activity answers with the config's version alone and writes the started
    # row itself (c690da1). No patch: the workflow reads both from the recorded answer, so the
    # generation's answers (the whole stored config, no "audited") replay as recorded, and
    # started_row_* (``python -m tests.record_histories started_row_``, the agent's start paths
    # kept) hold the new answer.
    assert '{"registered":true,"stored":{' in started and '"stored_version"' not in started
    new_start = '{"registered":true,"stored":null,"stored_version":1,"audited":'
    assert new_start + "true" in markers("started_row_agent_lifecycle.json")
    assert new_start + "false" in markers("started_row_agent_failed_init.json")  # no such type here
    assert DetectorActivities.sync_detector.__name__ in text("agent_detector")
    assert agent_contract.DETECTOR_WORKFLOW_TYPE in text("detector_run")
    assert "incident:" in text("agent_incidents")
    auto = text("action_auto")
    assert '"heartbeatTimeout": "10s"' in auto and "AiopsApprovalsNeeded" in auto
    # tests/record_started_executing_history.py: started showing executing, nothing upserted before
    # execute (aiops.contracts.action_start.status_at_start); action_auto was started proposed.
    at_once = json.loads(text("action_started_executing"))["events"]
    status = at_once[0]["workflowExecutionStartedEventAttributes"]["searchAttributes"]["indexedFields"]
    assert base64.b64decode(status["AiopsActionStatus"]["data"]) == b'"executing"'
    kinds = [e["eventType"] for e in at_once]
    assert "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" not in kinds[: scheduled(at_once, "execute_action")]
    # Signed approvals (refusals by signal and update in history) and approver notifications.
    signed = text("action_signed_notified")
    assert signed.count('"notify_approvers"') == 2  # told when it waits, and when it is decided
    assert signed.count("workflowExecutionUpdateCompletedEventAttributes") == 3  # one refused in history
    # Signed agent commands, and an action that confirms hold, release and abort with its agent.
    assert text("agent_signed_commands").count(f'"{agent_contract.COMMAND}"') >= 4
    assert markers(f"{GENERATION}action_confirmed_holds.json").count('"agent_hold_state"') >= 3
    # A long backlog is decided in bounded workflow tasks: some batch by a regular activity.
    assert '"decide_events"' in text("agent_bounded_task").replace(" ", "")
    # An upgrade: the command, then the run continues as new.
    upgrade = text("agent_upgrade")
    assert (
        f'"{agent_contract.COMMAND}"' in upgrade
        and "workflowExecutionContinuedAsNewEventAttributes" in upgrade
    )
    # The agent's health summary, upserted on change, and a monitor pass that reads the fleet from
    # visibility and observes only the agents that need it (its own steps are local activities).
    assert text("agent_health_summary").count('"AiopsHealth"') == 5  # ok, open, reset; stopping, stopped
    assert '"triage_fleet"' in markers(f"{GENERATION}monitor_pass.json")
    assert '"list_agents"' not in text("monitor_pass")


def scheduled(events: list[dict], activity: str) -> int:
    """The index of the event that scheduled ``activity`` (its first) in a history's JSON events."""
    return next(
        i
        for i, e in enumerate(events)
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == activity
    )


def markers(name: str) -> str:
    """The decoded details of a history's markers (patches, local activities), as one text."""
    history = json.loads((DIR / name).read_text())
    details = [
        base64.b64decode(payload["data"]).decode()
        for event in history["events"]
        for detail in event.get("markerRecordedEventAttributes", {}).get("details", {}).values()
        for payload in detail["payloads"]
    ]
    return "\n".join(details)


def patch_ids(path: Path) -> list[str]:
    """The ids of the ``workflow.patched`` calls a history recorded (its patch markers)."""
    history = json.loads(path.read_text())
    return [
        json.loads(base64.b64decode(payload["data"]))["id"]
        for event in history["events"]
        for payload in event.get("markerRecordedEventAttributes", {})
        .get("details", {})
        .get("patch-data", {})
        .get("payloads", [])
    ]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[AgentWorkflow, ActionWorkflow, DetectorWorkflow, HealthMonitorWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(load(path))


@workflow.defn(name=action_contract.WORKFLOW_TYPE)
class ActionWorkflowThatSkipsPlanning:
    """A careless change: the plan step removed without ``workflow.patched``."""

    @workflow.run
    async def run(self, input: ActionInput) -> ActionRecord:
        await workflow.execute_activity_method(
            AgentActivities.execute_action, input, start_to_close_timeout=timedelta(seconds=5)
        )
        raise AssertionError("unreachable in replay")


async def test_the_replay_test_catches_a_non_deterministic_change() -> None:
    replayer = Replayer(workflows=[ActionWorkflowThatSkipsPlanning], data_converter=pydantic_data_converter)
    history = load(next(p for p in HISTORIES if p.stem == f"{GENERATION}action_auto"))
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)


async def test_replaying_records_no_framework_metrics() -> None:
    """Workflow metrics go through ``workflow.metric_meter()``: a replay must not count a step again."""
    # Imported here: this module defines a workflow, and the sandbox re-imports it without I/O libraries.
    from prometheus_client import generate_latest

    from aiops.metrics import create_telemetry

    telemetry = create_telemetry()
    replayer = Replayer(
        workflows=[AgentWorkflow, ActionWorkflow],
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
        workflow_runner=workflow_runner(),
    )
    for name in ("agent_lifecycle", "action_signal_approval", "action_rolled_back"):
        name = f"{GENERATION}{name}"
        await replayer.replay_workflow(load(next(p for p in HISTORIES if p.stem == name)))
    text = generate_latest(telemetry.registry).decode()
    assert not [line for line in text.splitlines() if line.startswith("aiops_")], text[:2000]


def test_llm_histories_are_present() -> None:
    """The diagnosis writes its own audit row; the compact answer of small models; a garbage answer
    given up on; a read-only tool of an MCP server. No patch of this project in any of them."""
    names = {p.stem for p in LLM_HISTORIES}
    assert {
        f"{GENERATION}diagnosis_tool_call_audited",
        f"{GENERATION}diagnosis_compact",
        f"{GENERATION}diagnosis_garbage",
        f"{GENERATION}diagnosis_mcp_tool",
    } <= names
    mcp = (DIR / "llm" / f"{GENERATION}diagnosis_mcp_tool.json").read_text()
    assert "dynamic_toolset__aiops_mcp__call_tool" in mcp  # a tool of an MCP server
    audited = (DIR / "llm" / f"{GENERATION}diagnosis_tool_call_audited.json").read_text()
    assert '"record_audit"' in audited and "__call_tool" in audited
    # Only Pydantic AI's own patch (its durable agent's run ids), none of this project's.
    patches = {i for p in LLM_HISTORIES for i in patch_ids(p)}
    assert patches and all(i.startswith("pydantic_ai:") for i in patches), patches


@pytest.mark.parametrize("path", LLM_HISTORIES, ids=[p.stem for p in LLM_HISTORIES])
async def test_recorded_llm_diagnosis_replays(path: Path) -> None:
    """The llm agent's diagnoses replay with its worker's plugin and sandbox (agents/llm/temporal.py)."""
    # Imported here: this module defines a workflow, and the sandbox re-imports it.
    from agents.llm.temporal import WORKFLOWS, plugins
    from agents.llm.temporal import workflow_runner as llm_runner

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        plugins=plugins(),
        workflow_runner=llm_runner(),
    )
    await replayer.replay_workflow(load(path))
