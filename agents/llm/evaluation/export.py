"""Real recordings into cases: a diagnosis workflow's input and result, and its action's audit rows.

What is recorded where (so what ``aiops eval export`` reads):

- the ``llm_diagnosis`` audit row (one per diagnosis) says that a diagnosis happened, its event, its
  outcome and the proposed action's id; its tool calls carry arguments but only the result's size;
- the diagnosis workflow (``llm-diagnosis-<agent>:<event>``) holds the alert and the agent's settings
  at the time (its input, ``DiagnosisInput``) and every tool call with its bounded result (its
  result, ``DiagnosisResult``): the recording the replay answers from. It lives as long as the
  namespace's retention: older diagnoses cannot be exported;
- the proposed action's audit rows hold the human outcome, the label: approved and verified → that
  proposal is right; rejected → that proposal is wrong (what is right is unknown); anything else
  (still waiting, expired, failed, no proposal) → unknown, left for a person to label in the file.

Pure: the CLI (``aiops.cli.evaluate``) fetches, this module shapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agents.llm.contracts import DiagnosisInput
from agents.llm.evaluation.cases import Case, Label, RecordedCall, Target
from agents.llm.proposal import DiagnosisResult, outcome_of

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@-]")


def label_from_rows(result: DiagnosisResult, action_rows: Sequence[dict[str, Any]]) -> Label:
    """The human outcome of the diagnosis' proposal, from its action's audit rows (step, detail)."""
    proposal = result.proposal
    if proposal is None:
        return Label(expected="unknown", source="no proposal was recorded: label it by hand")
    target = Target(catalog_entry=proposal.catalog_entry, target=proposal.target)
    rejected = any(
        r.get("step") == "approval" and r.get("detail", {}).get("approved") is False for r in action_rows
    )
    if rejected:
        return Label(expected="unknown", rejected=target, source="rejected by a person")
    verified = any(
        r.get("step") == "verification" and r.get("detail", {}).get("verified") is True for r in action_rows
    )
    approved = any(
        r.get("step") == "approval" and r.get("detail", {}).get("approved") is True for r in action_rows
    )
    if verified:
        return Label(
            expected="action",
            action=target,
            source="approved and verified" if approved else "ran and verified",
        )
    return Label(expected="unknown", source="the proposal was neither verified nor rejected")


def case_id(agent_id: str, event_id: str) -> str:
    return _UNSAFE.sub("_", f"{agent_id}:{event_id}")[:128]


def case_from_recording(
    request: DiagnosisInput, result: DiagnosisResult, action_rows: Sequence[dict[str, Any]]
) -> Case:
    """One case: the alert, the settings at the time, the tool calls with their recorded answers."""
    settings = request.settings.model_dump(mode="json", exclude_defaults=True)
    settings.pop("escalation_agent", None)
    return Case(
        id=case_id(request.agent_id, request.event.id),
        title=(result.diagnosis.summary if result.diagnosis else "")[:300],
        alert=request.event,
        settings=settings,
        tool_calls=[
            RecordedCall(tool=c.tool, arguments=c.arguments, result=c.result, ok=c.ok)
            for c in result.tool_calls[:50]
        ],
        label=label_from_rows(result, action_rows),
        recorded={
            "model": result.model,
            "outcome": outcome_of(result),
            "proposal": result.proposal.model_dump(mode="json") if result.proposal else None,
            "no_proposal_reason": result.no_proposal_reason,
            "usage": result.usage.model_dump(),
        },
    )
