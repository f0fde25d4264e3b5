"""What the console's pages show, read from an ``ActionRecord``: plain values for the templates.

The templates only lay out; everything an approver reads (the one-line summary, the age, the
approvals counted against those needed, the deadline and what follows it, the diagnosis and its
tool calls) is decided here, where it can be tested without a browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiops.contracts.action import ActionRecord, ActionStatus
from aiops.contracts.models import RiskLevel

RISKS = [r.value for r in RiskLevel]
MAX_SHOWN = 4000  # characters of one tool result or event payload shown before "show less" cuts it

EXPIRY_MEANS = {
    "escalate": "it is escalated once to {target}, the wait extended; undecided then, it expires unexecuted",
    "reject": "it is rejected, unexecuted",
}


def one_line(text: str, limit: int = 160) -> str:
    first = " ".join((text or "").strip().splitlines()[0].split()) if (text or "").strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def age(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def approvals_count(record: ActionRecord) -> tuple[int, int]:
    """Approvals so far (distinct approvers, on the current plan) and approvals needed."""
    approved = {a.approver for a in record.approvals if a.approved}
    needed = record.decision.required_approvals if record.decision else 0
    return len(approved), needed


def proposed_at(record: ActionRecord) -> datetime:
    return record.history[0].at if record.history else record.event.timestamp


@dataclass
class InboxRow:
    action_id: str
    agent: str
    risk: str
    age: str
    summary: str
    approvals: int
    needed: int
    deadline: str


def inbox_rows(found: list[tuple[str, ActionRecord]], now: datetime) -> list[InboxRow]:
    rows = []
    for action_id, record in found:
        approved, needed = approvals_count(record)
        rows.append(
            InboxRow(
                action_id=action_id,
                agent=record.action.agent_id,
                risk=record.action.risk_level.value,
                age=age(proposed_at(record), now),
                summary=one_line(record.action.description),
                approvals=approved,
                needed=needed,
                deadline=_when(record.approval_deadline, now),
            )
        )
    return rows


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    left = (at - now).total_seconds()
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} (in {age(now, at)})" if left > 0 else f"{stamp} (passed)"


def pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"\n… [{len(text)} characters]"


@dataclass
class ToolCallView:
    id: str
    tool: str
    arguments: str
    result: str
    ok: bool


@dataclass
class DiagnosisView:
    summary: str
    confidence: str
    why: str
    model: str
    evidence: list[str]
    tool_calls: list[ToolCallView] = field(default_factory=list)


def diagnosis_of(record: ActionRecord) -> DiagnosisView | None:
    """The llm agent's diagnosis the action carries (``parameters.diagnosis``), if any."""
    raw = record.action.parameters.get("diagnosis")
    if not isinstance(raw, dict):
        return None
    evidence = []
    for item in raw.get("evidence") or []:
        if isinstance(item, dict):
            call = f" [tool call {item['tool_call_id']}]" if item.get("tool_call_id") else ""
            evidence.append(f"{item.get('observation', '')}{call}")
        else:
            evidence.append(str(item))
    calls = []
    for call in raw.get("tool_calls") or []:
        if isinstance(call, dict):
            calls.append(
                ToolCallView(
                    id=str(call.get("tool_call_id", "")),
                    tool=str(call.get("tool", "")),
                    arguments=pretty(call.get("arguments", {})),
                    result=str(call.get("result", ""))[:MAX_SHOWN],
                    ok=bool(call.get("ok", True)),
                )
            )
        else:
            calls.append(ToolCallView(id="", tool="", arguments="", result=str(call), ok=False))
    confidence = raw.get("confidence")
    return DiagnosisView(
        summary=str(raw.get("summary", "")),
        confidence=f"{confidence:.2f}" if isinstance(confidence, int | float) else "",
        why=str(raw.get("why", "")),
        model=str(raw.get("model", "")),
        evidence=evidence,
        tool_calls=calls,
    )


def after_deadline(on_expiry: str | None, target: str | None) -> str:
    """What happens when the deadline passes undecided (the agent's ``approval.on_expiry``)."""
    if on_expiry is None:
        return "what the agent's approval.on_expiry says (its config is not readable here)"
    text = EXPIRY_MEANS.get(on_expiry, f"on_expiry: {on_expiry}")
    return text.format(target=target or "the escalation target")


def decidable(record: ActionRecord) -> bool:
    return record.status == ActionStatus.PENDING_APPROVAL
