"""``aiops approvals``: the inbox of actions waiting for a person, and deciding them."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from aiops.cli.common import KeyOption, action_workflow_id, current_user, emit_pasteable_signal, key_for, run
from aiops.cli.output import (
    BadInput,
    TimesOption,
    WatchOption,
    age,
    compact,
    console,
    emit,
    pairs,
    repeat,
    shown,
    table,
    when,
)
from aiops.contracts.action import ActionRecord, ActionStatus

app = typer.Typer(help="The approval inbox: list, inspect, approve and reject actions.", no_args_is_help=True)

ActionArg = Annotated[
    str,
    typer.Argument(metavar="ACTION", help="the action id, action-<agent>:<event> (or <agent>:<event>)"),
]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as", metavar="NAME", help="who decides (default: $AIOPS_USER, else the approver of your key file)"
    ),
]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="why, for the audit log")]
PLAN_DIGEST = re.compile(r"[0-9a-f]{64}")  # aiops.contracts.action.plan_digest: a sha256, in hex


def entry(action_id: str, record: ActionRecord) -> dict[str, Any]:
    """The JSON shape of an action: its id and its whole record."""
    return {"action_id": action_id, **record.model_dump(mode="json")}


def waiting_since(record: ActionRecord) -> datetime:
    entered = [h.at for h in record.history if h.status == ActionStatus.PENDING_APPROVAL]
    return entered[-1] if entered else record.event.timestamp


def approvals_so_far(record: ActionRecord) -> str:
    approved = {a.approver for a in record.approvals if a.approved}
    needed = record.decision.required_approvals if record.decision else 0
    return f"{len(approved)}/{needed}" if needed else str(len(approved))


@app.command("list")
def list_approvals(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="only this agent's actions")] = None,
    watch: WatchOption = None,
    times: TimesOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="only the action ids, oldest first, one a line")
    ] = False,
) -> None:
    """Actions waiting for approval: id, agent, risk, age, approvals so far, what they would do.

    --watch SECONDS refreshes the inbox until Ctrl-C; --quiet prints only the ids, for
    scripts: ACTION=$(aiops approvals list -q | head -n 1).
    """
    repeat(watch, times, lambda n: _list_inbox(ctx, agent, watch is not None and n > 0, quiet))


def _list_inbox(ctx: typer.Context, agent: str | None, refresh: bool, quiet: bool = False) -> None:
    inbox = run(ctx, lambda aiops: aiops.approvals.inbox(agent))

    def render() -> None:
        if quiet:
            for action_id, _ in inbox:
                typer.echo(action_id)
            return
        if refresh:
            typer.echo(f"--- {when(datetime.now(UTC))}")
        if not inbox:
            typer.echo("no actions are waiting for approval" + (f" from agent {agent}" if agent else ""))
            return
        now = datetime.now(UTC)
        rows = [
            (
                action_id,
                r.action.agent_id,
                r.action.risk_level,
                age(waiting_since(r), now),
                approvals_so_far(r),
                r.action.description,
            )
            for action_id, r in inbox
        ]
        console().print(table(["ACTION", "AGENT", "RISK", "AGE", "APPROVALS", "DESCRIPTION"], rows))

    emit(ctx, [entry(action_id, r) for action_id, r in inbox], render)


def approve_command(action_id: str, record: ActionRecord, who: str) -> str:
    words = ["aiops", "approvals", "approve", action_id, "--as", who]
    if who == "<your name>":
        words = ["aiops", "approvals", "approve", action_id, "--key", "<your key file>"]
    if record.plan_digest:
        words += ["--plan-digest", record.plan_digest]
    return command_lines([*words, "--comment", "<why>"])


def command_lines(words: list[str], width: int = 96) -> str:
    """A shell command that fits ``width`` columns: one ``--option value`` a line, with
    backslash continuations, once it is longer; pasted, it is still one command."""
    one = shlex.join(words)
    if len(one) + 2 <= width:
        return "  " + one
    lines: list[str] = []
    for word in words:
        if word.startswith("-") or not lines:
            lines.append(shlex.quote(word))
        else:
            lines[-1] += " " + shlex.quote(word)
    return "  " + " \\\n      ".join(lines)


def plan_lines(record: ActionRecord) -> list[str]:
    """The plan once: its summary, one line per change, then the details that do not repeat them."""
    plan = record.plan
    if plan is None:
        return ["plan: none (the agent has no dry run for this action)"]
    lines = [f"plan: {plan.summary}", f"  digest {record.plan_digest}"]
    lines += [f"  {change}" for change in plan.changes]
    listed = {change.strip() for change in plan.changes}
    details = [line for line in (plan.details or "").splitlines() if line.strip() not in listed]
    while details and not details[0].strip():
        details.pop(0)
    if details:
        lines += ["", *details]
    return lines


@app.command("show")
def show(ctx: typer.Context, action: ActionArg) -> None:
    """Everything an approver needs: plan, triggering event, risk, policy, approvals, the approve command."""
    action_id = action_workflow_id(action)
    record = run(ctx, lambda aiops: aiops.approvals.action(action_id))
    try:
        who = current_user(None)
    except BadInput:
        who = "<your name>"
    reject_words = ["aiops", "approvals", "reject", action_id]
    reject_words += ["--key", "<your key file>"] if who == "<your name>" else ["--as", who]

    def render() -> None:
        a, e, d = record.action, record.event, record.decision
        parts: list[Any] = [
            pairs(
                [
                    ("action", action_id),
                    ("status", record.status.value + (" (held: the agent is paused)" if record.held else "")),
                    ("does", f"{a.type.value} on {', '.join(a.target_resources) or '-'}: {a.description}"),
                    ("risk", a.risk_level),
                    ("estimated impact", a.estimated_impact or "-"),
                    ("requested by", a.requested_by),
                    ("config version", record.config_version),
                ]
            ),
            pairs(
                [
                    ("outcome", d.outcome.value if d else "-"),
                    ("reason", d.reason if d else "-"),
                    (
                        "needs",
                        f"{d.required_approvals} approval(s) from roles {', '.join(d.allowed_roles)}"
                        if d and d.required_approvals
                        else "-",
                    ),
                    ("approvals so far", approvals_so_far(record)),
                    (
                        "decide before",
                        when(record.approval_deadline) + (" (escalated)" if record.escalated else "")
                        if record.approval_deadline
                        else "-",
                    ),
                ],
                title="policy",
            ),
            pairs(
                [
                    ("event", f"{e.id} ({e.type.value}, {e.severity.value}) from {e.source}"),
                    ("at", when(e.timestamp)),
                    ("correlation id", e.correlation_id),
                    ("data", compact(e.data, 400)),
                ],
                title="triggering event",
            ),
        ]
        parts.append(Text("\n".join(plan_lines(record))))
        if record.approvals:
            rows = [
                (
                    x.approver,
                    "approved" if x.approved else "rejected",
                    "yes" if x.authenticated else "NO (unauthenticated)",
                    when(x.at),
                    x.channel,
                    x.comment,
                )
                for x in record.approvals
            ]
            parts.append(table(["WHO", "DECISION", "SIGNED", "AT", "CHANNEL", "COMMENT"], rows, "decisions"))
        if record.refused:
            refusals = [
                (x.approver, "approve" if x.approved else "reject", when(x.at), x.channel, x.reason)
                for x in record.refused
            ]
            parts.append(
                table(["WHO", "TRIED", "AT", "CHANNEL", "REFUSED BECAUSE"], refusals, "refused decisions")
            )
        if record.result is not None:
            parts.append(
                pairs(
                    [("result", record.result.message or record.result.error), ("verified", record.verified)]
                )
            )
        if record.error:
            parts.append(pairs([("error", record.error)]))
        if record.status == ActionStatus.PENDING_APPROVAL:
            parts.append(
                Text(
                    "approve with:\n"
                    + approve_command(action_id, record, who)
                    + "\nreject with:\n"
                    + command_lines([*reject_words, "--comment", "<why>"])
                    + "\nfor the Web UI (Send a Signal) or `temporal workflow signal --input`:\n"
                    + command_lines(["aiops", "approvals", "token", action_id])
                )
            )
        out = console()
        for part in parts:
            out.print(shown(part) if isinstance(part, Text) else part)  # tables escape cell by cell
            out.print()

    emit(ctx, entry(action_id, record), render)


def _decide(
    ctx: typer.Context,
    action: str,
    approve: bool,
    who: str | None,
    comment: str,
    digest: str | None,
    key_path: Path | None,
) -> None:
    action_id = action_workflow_id(action)
    key = key_for(key_path, who)
    name = key.approver if key is not None else current_user(who)
    if approve:
        record = run(
            ctx, lambda aiops: aiops.approvals.approve(action_id, name, comment, plan_digest=digest, key=key)
        )
    else:
        record = run(ctx, lambda aiops: aiops.approvals.reject(action_id, name, comment, key=key))
    signed = "signed" if key is not None else "UNSIGNED (the agent's config allows unauthenticated approvals)"

    def render() -> None:
        if not approve:
            typer.echo(f"rejected {action_id} as {name}, {signed}: the action will not run")
            return
        approved = len({a.approver for a in record.approvals if a.approved})
        needed = record.decision.required_approvals if record.decision else 1
        outcome = (
            "the action goes ahead"
            if approved >= needed
            else f"waiting for {needed - approved} more approver(s)"
        )
        typer.echo(f"approved {action_id} as {name}, {signed} ({approved}/{needed} approvals): {outcome}")

    emit(ctx, entry(action_id, record), render)


@app.command("approve")
def approve(
    ctx: typer.Context,
    action: ActionArg,
    who: AsOption = None,
    comment: CommentOption = "",
    plan_digest: Annotated[
        str | None,
        typer.Option("--plan-digest", help="approve only if the plan is still this one (from `show`)"),
    ] = None,
    key: KeyOption = None,
) -> None:
    """Approve an action, signed with your key; a refusal (untrusted key, missing role, ...) exits 1
    with the reason."""
    _decide(ctx, action, True, who, comment, _well_formed_digest(plan_digest), key)


def _well_formed_digest(given: str | None) -> str | None:
    """A mistyped digest is bad input (exit 2), not a plan that changed since it was reviewed."""
    if given is None:
        return None
    digest = given.strip().lower()
    if not PLAN_DIGEST.fullmatch(digest):
        raise BadInput(
            f"--plan-digest {given[:80]!r} is malformed: a plan digest is 64 hexadecimal characters, "
            "as `aiops approvals show` prints it"
        )
    return digest


@app.command("reject")
def reject(
    ctx: typer.Context,
    action: ActionArg,
    who: AsOption = None,
    comment: CommentOption = "",
    key: KeyOption = None,
) -> None:
    """Reject an action, signed with your key; a refusal exits 1 with the reason."""
    _decide(ctx, action, False, who, comment, None, key)


@app.command("token")
def token(
    ctx: typer.Context,
    action: ActionArg,
    key: KeyOption = None,
    reject_it: Annotated[
        bool, typer.Option("--reject", help="a token to reject (default: to approve)")
    ] = False,
    comment: CommentOption = "",
    minutes: Annotated[
        int, typer.Option("--minutes", min=1, max=24 * 60, help="how long the token is valid (default 15)")
    ] = 15,
) -> None:
    """Print a signed decision as JSON, to paste into the Temporal Web UI's Send a Signal box
    (signal `approve` or `reject`) or pass to `temporal workflow signal --input`. It is bound to
    this action, its current plan and the verb, valid for --minutes, and usable once."""
    action_id = action_workflow_id(action)
    key_file = key_for(key, None)
    if key_file is None:
        raise BadInput(
            "no key to sign with: pass --key FILE, set AIOPS_KEY_FILE, or `aiops keys generate NAME`"
        )
    request = run(
        ctx,
        lambda aiops: aiops.approvals.token(
            action_id, key_file, approve=not reject_it, lifetime_seconds=minutes * 60
        ),
    )
    body = request.model_copy(update={"comment": comment}).model_dump(
        exclude_none=True, exclude_defaults=True
    )
    body["approver"] = request.approver
    signal = "reject" if reject_it else "approve"
    emit_pasteable_signal(ctx, action_id, signal, body, minutes, {"action_id": action_id})
