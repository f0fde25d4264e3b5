"""What an approver reads: the Web UI summary, details and current details, and the step labels.

Pure string building from the action record, so the workflow can refresh it
on every change and the tests can read it. The Web UI shows the current
details in a narrow column that cuts long lines off: they keep to short lines
and put the long ``temporal`` commands in the static details, which have room.
The static details are written once, when the action starts, so they say
nothing that stops being true once it ends; what changes is in the current
details, which always say what to do now or, once final, what happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from aiops.contracts import search_attributes as sa
from aiops.contracts.action import (
    ABORT,
    AGENT_MESSAGES,
    APPROVE,
    DECIDE,
    HOLD,
    PEOPLE_MESSAGES,
    REJECT,
    RELEASE,
    STATUS,
    ActionRecord,
    ActionStatus,
)
from aiops.contracts.config import ApprovalSettings, ExpiryAction
from aiops.contracts.models import AgentAction, SystemEvent
from aiops.contracts.policy import PolicyDecision
from workflows.action.approval_gate import approvals_count

_KINDS = {DECIDE: "update", APPROVE: "signal", REJECT: "signal", STATUS: "query"}

_DECIDE_INPUT = {"approver": "<me>", "credential": "<t>", "approve": True}  # <t>: the signed token
_SIGNAL_INPUT = {"approver": "<your name>", "credential": "<signed token>", "comment": "<why>"}
_SHORT_SIGNAL_INPUT = {"approver": "<you>", "credential": "<token>"}  # aiops approvals token

_HEADLINES = {
    ActionStatus.PROPOSED: "Proposed: the policy is being applied",
    ActionStatus.PLANNING: "Planning: the dry run is in progress",
    ActionStatus.APPROVED: "Approved: waiting to start executing",
    ActionStatus.EXECUTING: "Executing: nothing to do but wait",
    ActionStatus.SUCCEEDED: "Succeeded",
    ActionStatus.VERIFYING: "Verifying that the change took effect",
    ActionStatus.VERIFIED: "Verified: done, nothing left to do",
    ActionStatus.FAILED: "Failed: nothing left to decide",
    ActionStatus.ROLLED_BACK: "Rolled back: verification failed and the change was undone",
    ActionStatus.REJECTED: "Rejected: it will not run",
    ActionStatus.EXPIRED: "Expired: no decision in time; a timeout never approves",
    ActionStatus.DENIED: "Denied by policy: it will not run",
}


def approve_command(workflow_id: str) -> str:
    """The signal on one line (for notifications and ``status``); the details show it wrapped."""
    return (
        f"temporal workflow signal --workflow-id {workflow_id} --name {APPROVE} "
        f"--input '{json.dumps(_SIGNAL_INPUT, separators=(',', ':'))}'"
    )


def wrapped_command(verb: str, workflow_id: str, name: str, body: Mapping[str, object]) -> list[str]:
    """A ``temporal workflow`` command as short shell lines (continued with ``\\``), so a narrow
    column shows all of it and it still pastes into a terminal as one command."""
    return [
        f"temporal workflow {verb} \\",
        f"  --workflow-id '{workflow_id}' \\",
        f"  --name {name} \\",
        f"  --input '{json.dumps(body, separators=(',', ':'))}'",
    ]


def console_link(console_url: str | None, action_id: str) -> str:
    """The action's page in the approver's console (``approval.console_url``); empty when unset."""
    if not console_url:
        return ""
    return f"{console_url.rstrip('/')}/console/actions/{_path_segment(action_id)}"


def _path_segment(text: str) -> str:
    """``text`` percent-encoded for a URL path segment (action ids are safe by construction; this
    only guards the link; no urllib in workflow modules, see tests/unit/test_workflow_determinism)."""
    return "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "_.:@-") else "".join(f"%{b:02X}" for b in ch.encode())
        for ch in text
    )


def static_summary(action: AgentAction) -> str:
    targets = ", ".join(action.target_resources[:3]) or "-"
    return f"[{action.risk_level.value}] {action.type.value} on {targets}: {action.description}"[:200]


def inbox_summary(action: AgentAction) -> str:
    """The inbox's ``AiopsSummary`` column: what the action is, on one safe line of at most
    ``sa.SUMMARY_MAX_CHARS``: its targets, then its description (search attributes are never
    encrypted: no parameters here). Targets first and nothing else, so the start of the line, all
    a 1440 px screen shows of the inbox's last column, says on what; the risk has its own column."""
    targets = ", ".join(action.target_resources[:3]) or "-"
    more = f" (+{len(action.target_resources) - 3})" if len(action.target_resources) > 3 else ""
    return sa.summary_value(f"{targets}{more}: {action.description}")


def static_details(
    action: AgentAction, event: SystemEvent, decision: PolicyDecision, workflow_id: str
) -> str:
    lines = [
        f"### {action.description}",
        f"- **risk**: {action.risk_level.value}",
        f"- **action**: {action.type.value} on {', '.join(action.target_resources) or '-'}",
        f"- **estimated impact**: {action.estimated_impact or '-'}",
        f"- **policy**: {decision.outcome.value}: {decision.reason}",
        f"- **event**: `{event.id}` {event.type.value} from {event.source} ({event.severity.value})",
        "",
        "What to do now, or what happened, is under **Current Details** (press R there to refresh).",
    ]
    if decision.required_approvals:
        lines += [
            "",
            "While it waits for approval, decide from a terminal with the update "
            '(a refusal comes back at once, with the reason; `"approve":false` rejects):',
            "",
            *(
                f"    {line}"
                for line in wrapped_command("update execute", workflow_id, DECIDE, _DECIDE_INPUT)
            ),
            "",
            f"or with the signal (`{REJECT}` takes the same input; a refusal shows only in Current Details):",
            "",
            *(f"    {line}" for line in wrapped_command("signal", workflow_id, APPROVE, _SHORT_SIGNAL_INPUT)),
        ]
    lines += ["", "Messages this workflow takes:", ""]
    lines += [f"- `{name}` ({_KINDS.get(name, 'signal')}): {text}" for name, text in PEOPLE_MESSAGES.items()]
    lines += [f"- `{name}` (signal): {text}" for name, text in AGENT_MESSAGES.items()]
    return "\n".join(lines)


def details_markdown(
    record: ActionRecord, decision: PolicyDecision, approval: ApprovalSettings | None = None
) -> str:
    """The current details: the headline says what a person must do now, or what happened;
    a refused decision comes right after it, since the person who sent it looks here."""
    status = record.status
    if status == ActionStatus.PENDING_APPROVAL:
        roles = ", ".join(decision.allowed_roles) or "any approver"
        headline = (
            f"Waiting for approval: {approvals_count(record)} of {decision.required_approvals} "
            f"(roles: {roles})"
        )
    elif status == ActionStatus.REJECTED and record.error:
        headline = f"Rejected: {record.error}"
    else:
        headline = _HEADLINES[status]
    facts: list[str] = []
    if record.refused:
        last = record.refused[-1]
        verb = "approve" if last.approved else "reject"
        facts.append(
            f"**Refused**: {last.approver} may not {verb} ({last.channel}, {clock(last.at)}): {last.reason}"
            + (f" ({record.refused_total} refused so far)" if record.refused_total > 1 else "")
        )
    if status == ActionStatus.PENDING_APPROVAL and record.approval_deadline is not None:
        facts.append(
            f"**Decide before** {clock(record.approval_deadline)}; {_after_deadline(record, approval)}"
        )
    for a in record.approvals:
        who = "Approved by" if a.approved else "Rejected by"
        proof = "signed" if a.authenticated else "UNAUTHENTICATED, by name only"
        facts.append(f"**{who}** {a.approver} ({proof}; {a.channel}, {clock(a.at)}): {a.comment or '-'}")
    if record.escalated:
        facts.append(f"**Escalated**: {record.escalation_error or 'the escalation target was notified'}")
    if record.held:
        facts.append("**Held**: the agent is paused; execution waits until it resumes")
    facts.append(
        f"**Risk** {record.action.risk_level.value}; **policy** {decision.outcome.value}: {decision.reason}"
    )
    if record.result is not None:
        facts.append(f"**Result**: {record.result.message or record.result.error or '-'}")
    if record.error and status != ActionStatus.REJECTED:
        facts.append(f"**Error**: {record.error}")
    lines = [f"### {headline}", "", *(f"- {fact}" for fact in facts)]
    link = console_link(approval.console_url if approval is not None else None, record.action.id)
    if link:  # the text stays short in the narrow column; the link behind it is whole
        lines += ["", f"[Open it in the console]({link})"]
    if record.plan is not None:
        lines += ["", f"**Plan** (digest `{(record.plan_digest or '')[:12]}`): {record.plan.summary}"]
        if record.plan.changes:
            lines += ["", *(f"    {change}" for change in record.plan.changes[:20])]
    if status == ActionStatus.PENDING_APPROVAL:
        lines += _how_to_decide(record.action.id)
    elif status.is_final:
        lines += [
            "",
            "Nothing is left to decide. Its audit trail:",
            "",
            f"    aiops audit tail --action {record.action.id}",
        ]
    return "\n".join(lines)


def _how_to_decide(action_id: str) -> list[str]:
    return [
        "",
        "**Decide here**: sign your decision with your own key in a terminal,",
        "",
        f"    aiops approvals token {action_id} \\",
        "      --key <your key file>",
        "",
        f"then More Actions → Send a Signal → `{APPROVE}` and paste the JSON line it printed "
        "(valid 15 minutes, once; `--reject` makes one to reject). A name alone is refused unless "
        "the agent's config allows unsigned approvals. The UI only says \u201cWorkflow signaled.\u201d: "
        "a refusal then shows at the top here (press R). Send an Update → `decide` with the same "
        'JSON plus `"approve": true` shows a refusal at once.',
        "",
        "Or decide from a terminal (a refusal returns at once):",
        "",
        f"    aiops approvals approve {action_id} \\",
        "      --key <your key file> --comment '<why>'",
        "",
        "The `temporal` commands are under Details.",
        f"`{HOLD}`, `{RELEASE}` and `{ABORT}` are the agent's: never send them by hand.",
    ]


def _after_deadline(record: ActionRecord, approval: ApprovalSettings | None) -> str:
    if approval is not None and approval.on_expiry == ExpiryAction.ESCALATE and not record.escalated:
        return f"then it escalates to {approval.escalation_target} and waits once more"
    return "then it expires as rejected (a timeout never approves)"


def clock(at: datetime) -> str:
    """``2026-12-02 04:49 UTC``: what a person reads in a deadline (the workflow's clock is UTC)."""
    return at.strftime("%Y-%m-%d %H:%M UTC")


# ----- step labels (the timeline's and event history's summaries) --------------------------


def _targets(action: AgentAction) -> str:
    names = action.target_resources
    if not names:
        return "no named resource"
    if len(names) <= 2:
        return " and ".join(names)
    return f"{names[0]} and {len(names) - 1} more resources"


def plan_step(action: AgentAction) -> str:
    return f"plan: dry run of {action.type.value} on {_targets(action)}"[:200]


def execute_step(action: AgentAction, max_attempts: int) -> str:
    attempts = "until it succeeds" if max_attempts <= 0 else f"up to {max_attempts} attempts"
    return f"execute {action.type.value} on {_targets(action)} ({attempts})"[:200]


def verify_step(action: AgentAction) -> str:
    return f"verify that {action.type.value} on {_targets(action)} took effect"[:200]


def rollback_step(action: AgentAction) -> str:
    return f"roll back {action.type.value} on {_targets(action)}: verification failed"[:200]


def escalation_step(target: str) -> str:
    return f"escalate to {target}: no decision before the approval deadline"[:200]


def notice_step(channel: str, step: str) -> str:
    """``tell slack #0: approval needed``: one approval notice's delivery on the timeline."""
    what = {"pending": "approval needed", "escalated": "escalated", "expired": "expired"}.get(step, "decided")
    return f"tell {channel}: {what} (retried until delivered)"[:200]


def deadline_step(deadline: datetime, then: str) -> str:
    return f"approval deadline {deadline.strftime('%H:%M UTC')} ({then})"[:200]
