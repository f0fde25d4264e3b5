"""``aiops agents``: list, inspect, start, stop, pause, resume and upgrade agents."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from aiops.cli.common import (
    KeyOption,
    emit_pasteable_signal,
    input_file_option,
    key_for,
    load_config,
    run,
    signer,
)
from aiops.cli.output import (
    BadInput,
    Failed,
    TimesOption,
    WatchOption,
    console,
    emit,
    pairs,
    repeat,
    say,
    table,
    when,
)
from aiops.client import AiopsClient, CommandRefusedError
from aiops.contracts import agent as agent_contract
from aiops.contracts.agent import AgentState, AgentStatus, CommandApplied, agent_workflow_id
from aiops.contracts.config import AgentConfig, AgentVerb

app = typer.Typer(help="List, inspect, start, stop, pause and resume agents.", no_args_is_help=True)

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="the agent's id")]


def pending_approvals(status: AgentStatus) -> int:
    return sum(1 for p in status.pending_actions if p.status == "pending_approval")


@app.command("list")
def list_agents(
    ctx: typer.Context,
    state: Annotated[AgentState | None, typer.Option("--state", help="only agents in this state")] = None,
    watch: WatchOption = None,
    times: TimesOption = None,
) -> None:
    """Running agents: id, type, state, config version, events processed, pending approvals.

    --watch SECONDS refreshes the list until Ctrl-C.

    With --state failed: the agents whose workflow failed in the last 24 hours (they are no
    longer running), with the failure.
    """
    if state == AgentState.FAILED:
        failed = run(ctx, _failed_agents)

        def render_failed() -> None:
            if not failed:
                say(ctx, "no agent failed in the last 24 hours")
                return
            rows = [(f["agent_id"], f["type"], "failed", f["failed_at"], f["failure"]) for f in failed]
            console().print(table(["AGENT", "TYPE", "STATE", "FAILED", "FAILURE"], rows))

        emit(ctx, failed, render_failed)
        return
    silent: list[int] = []
    repeat(watch, times, lambda n: silent.append(_list_running(ctx, state, watch is not None and n > 0)))
    if silent[-1]:
        raise Failed(f"{silent[-1]} agent(s) did not answer their status query (named above)")


def _list_running(ctx: typer.Context, state: AgentState | None, refresh: bool) -> int:
    """Print the answering agents, and warn on stderr of each one that did not answer (its
    workers down, say) instead of failing the whole list; how many did not answer."""
    found = run(ctx, lambda aiops: aiops.agents.survey(state))
    statuses = found.statuses

    def render() -> None:
        if refresh:
            typer.echo(f"--- {when(datetime.now(UTC))}")
        if not statuses:
            say(ctx, "no agent answered" if found.unanswered else "no agents are running")
            return
        rows = [
            (
                s.agent_id,
                s.type,
                s.state,
                s.config_version,
                s.counters.events_processed,
                pending_approvals(s),
                len(s.pending_actions),
            )
            for s in statuses
        ]
        columns = ["AGENT", "TYPE", "STATE", "CONFIG", "EVENTS", "APPROVALS", "ACTIONS"]
        console().print(table(columns, rows))

    emit(ctx, statuses, render)
    for silent in found.unanswered:
        console(stderr=True).print(f"warning: agent {silent.agent_id} did not answer: {silent.reason}")
    return len(found.unanswered)


FAILED_WITHIN = timedelta(hours=24)


async def _failed_agents(aiops: AiopsClient) -> list[dict[str, Any]]:
    """Agents on this task queue whose latest workflow failed recently, as the CLI shows them."""
    failed = await aiops.agents.failed(since=datetime.now(UTC) - FAILED_WITHIN)
    return [
        {
            "agent_id": f.agent_id,
            "type": f.type,
            "state": "failed",
            "failed_at": f.failed_at.isoformat() if f.failed_at else None,
            "failure": f.failure,
        }
        for f in failed
    ]


async def _every_agent(aiops: AiopsClient) -> list[str]:
    return sorted(await aiops.agents.ids(this_queue=True))


@app.command("status")
def status(ctx: typer.Context, agent: AgentArg) -> None:
    """One agent's state, counters, queue and pending actions."""
    s = run(ctx, lambda aiops: aiops.agents.status(agent), agent_id=agent)

    def render() -> None:
        c = s.counters
        overview = pairs(
            [
                ("agent", f"{s.agent_id} ({s.name})"),
                ("type", s.type),
                ("state", s.state.value + (f": {s.failure}" if s.failure else "")),
                ("config version", s.config_version),
                ("automation", s.config.automation_level),
                ("started", when(s.started_at)),
                ("last event", when(s.last_event_at)),
                ("queue", s.queue_length),
                (
                    "events",
                    f"{c.events_received} received, {c.events_processed} processed, "
                    f"{c.events_deduplicated} duplicates, {c.events_filtered} filtered, "
                    f"{c.events_rejected} rejected",
                ),
                (
                    "actions",
                    f"{c.actions_proposed} proposed, {c.actions_succeeded} succeeded, "
                    f"{c.actions_failed} failed, {c.actions_rejected} rejected or denied",
                ),
                ("error rate", f"{s.error_rate:.1%}"),
                (
                    "circuit breaker",
                    f"OPEN (aiops agents reset-breaker {s.agent_id})" if s.circuit_open else "closed",
                ),
            ]
        )
        parts: list[Any] = [overview]
        if s.pending_actions:
            pending = [
                (p.action_id, p.status, p.risk_level, p.description, when(p.proposed_at))
                for p in s.pending_actions
            ]
            parts.append(
                table(["ACTION", "STATUS", "RISK", "DESCRIPTION", "PROPOSED"], pending, "pending actions")
            )
        if s.incidents:
            open_incidents = [
                (
                    i.key,
                    i.severity,
                    f"{i.firing}/{i.alerts}",
                    "decided" if i.decided else "grouping",
                    when(i.opened_at),
                )
                for i in s.incidents
            ]
            parts.append(
                table(
                    ["INCIDENT", "SEVERITY", "FIRING/ALERTS", "STATE", "OPENED"],
                    open_incidents,
                    "open incidents",
                )
            )
        problems = [("error", p) for p in s.recent_errors[-5:]] + [
            ("rejected", p) for p in s.recent_rejections[-5:]
        ]
        if problems:
            recent = [(when(p.at), kind, p.event_id, p.message) for kind, p in problems]
            parts.append(table(["AT", "KIND", "EVENT", "MESSAGE"], recent, "recent problems"))
        out = console()
        for index, part in enumerate(parts):
            if index:
                out.print()
            out.print(part)

    emit(ctx, s, render)


@app.command("start")
def start(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Argument(
            metavar="[AGENT]",
            help="restart this agent from its latest stored config version (needs DATABASE_URL)",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        input_file_option("--config", "-c", help="start the agent this AgentConfig (JSON) describes"),
    ] = None,
    started_by: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="NAME",
            help="who starts it (default: the approver of your key file, else $AIOPS_USER)",
        ),
    ] = None,
    key: KeyOption = None,
) -> None:
    """Start an agent from a config file, or restart one from its latest stored config.

    Starting an agent that already runs changes nothing: with the same config it
    succeeds, with a different one it fails and says to use `aiops config apply`.
    The start is recorded as by the approver of --key (like every command that changes
    something); the config itself says who may command the agent from then on.
    """
    if (agent is None) == (config_file is None):
        raise BadInput("give either --config FILE.json or the AGENT id to restart from its stored config")
    config = load_config(config_file) if config_file is not None else None
    who, _ = signer(key, started_by)

    async def work(aiops: AiopsClient) -> dict[str, object]:
        nonlocal config
        agent_id = config.id if config is not None else str(agent)
        if await aiops.agents.is_running(agent_id):
            if config is not None:
                running = (await aiops.agents.status(agent_id)).config
                if _settings_of(running) != _settings_of(config):
                    raise Failed(
                        f"agent {agent_id} is already running with a different config "
                        f"(version {running.version}); change it with `aiops config apply FILE.json`"
                    )
            return {"agent_id": agent_id, "workflow_id": agent_workflow_id(agent_id), "started": False}
        if config is None:
            config = (await aiops.config.latest(agent_id)).config
        handle = await aiops.agents.start(config, started_by=who)
        return {
            "agent_id": agent_id,
            "workflow_id": handle.id,
            "run_id": handle.result_run_id,
            "started": True,
            "config_version": config.version or None,
        }

    result = run(ctx, work, agent_id=agent)

    def render() -> None:
        if result["started"]:
            version = f" on config version {result['config_version']}" if result.get("config_version") else ""
            typer.echo(f"started agent {result['agent_id']}{version} (workflow {result['workflow_id']})")
        else:
            typer.echo(f"agent {result['agent_id']} is already running; nothing changed")

    emit(ctx, result, render)


def _settings_of(config: AgentConfig) -> dict[str, object]:
    return config.model_dump(mode="json", exclude={"version"})


@app.command("stop")
def stop(
    ctx: typer.Context,
    agent: AgentArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why, for the audit log")] = "",
    drain: DrainOption = True,
    who: AsOption = None,
    key: KeyOption = None,
) -> None:
    """Stop an agent; running actions finish on their own (with --no-drain, actions not yet
    executing are aborted). Signed with your key; needs the stop role (sre or admin by default)."""
    actor, key_file = signer(key, who)
    applied = run(
        ctx,
        lambda aiops: aiops.agents.stop(agent, reason=reason, drain=drain, actor=actor, key=key_file),
        agent_id=agent,
    )
    emit(
        ctx,
        {"agent_id": agent, "requested": "stop", "reason": reason, "drain": drain, **_applied(applied)},
        lambda: typer.echo(
            f"agent {agent} is stopping"
            + (" after deciding its queued events" if drain else " now")
            + f" (asked by {applied.actor}, {_proof(applied)})"
        ),
    )


def _applied(applied: CommandApplied) -> dict[str, object]:
    return {"by": applied.actor, "authenticated": applied.authenticated, "changed": applied.changed}


def _proof(applied: CommandApplied) -> str:
    return "signed" if applied.authenticated else "UNSIGNED: the agent's config is in dev mode"


DrainOption = Annotated[
    bool,
    typer.Option("--drain/--no-drain", help="decide the queued events first (default), or drop them"),
]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as", metavar="NAME", help="who asks (default: the approver of your key file, or $AIOPS_USER)"
    ),
]
OptionalAgentArg = Annotated[
    str | None, typer.Argument(metavar="[AGENT]", help="the agent's id (or --all)", show_default=False)
]
AllOption = Annotated[bool, typer.Option("--all", help="every running agent on the task queue")]


def _one_or_all(
    ctx: typer.Context, verb: AgentVerb, agent: str | None, every: bool, who: str | None, key: Path | None
) -> None:
    if (agent is None) == (not every):
        raise BadInput(f"give the AGENT to {verb.value}, or --all for every running agent")
    actor, key_file = signer(key, who)

    async def work(aiops: AiopsClient) -> list[tuple[str, str]]:
        targets = await _every_agent(aiops) if every else [str(agent)]

        async def one(target: str) -> tuple[str, str]:
            try:
                applied = await aiops.agents.command(target, verb, actor=actor, key=key_file)
            except CommandRefusedError as err:
                if not every:
                    raise
                return target, str(err)
            return target, "done" if applied.changed else "unchanged"

        return list(await asyncio.gather(*(one(t) for t in targets)))

    outcomes = run(ctx, work, agent_id=agent)
    refused = [(a, why) for a, why in outcomes if why.startswith("refused")]

    def render() -> None:
        if every:
            done = [a for a, why in outcomes if not why.startswith("refused")]
            typer.echo(f"{verb.value}: {len(done)} agent(s) as {actor}: {', '.join(done) or 'none running'}")
            for a, why in refused:
                typer.echo(f"  {a}: {why}", err=True)
        else:
            typer.echo(f"agent {agent}: {verb.value} {outcomes[0][1]} (as {actor})")

    emit(ctx, {"agent_ids": [a for a, _ in outcomes], "requested": verb.value, "by": actor,
               "outcomes": dict(outcomes)}, render)  # fmt: skip
    if refused:
        raise Failed(f"{len(refused)} agent(s) refused to {verb.value}")


def _fleet_verb(name: str, verb: AgentVerb, doc: str) -> None:
    """Register ``aiops agents NAME AGENT|--all``: the verbs that apply to one agent or the
    whole fleet differ only in the verb sent and the help, so one command body serves all."""

    def command(
        ctx: typer.Context,
        agent: OptionalAgentArg = None,
        every: AllOption = False,
        who: AsOption = None,
        key: KeyOption = None,
    ) -> None:
        _one_or_all(ctx, verb, agent, every, who, key)

    command.__name__ = name.replace("-", "_")
    app.command(name, help=doc)(command)


_fleet_verb(
    "pause",
    AgentVerb.PAUSE,
    """Pause an agent, or every agent (--all: the kill switch): events queue up, approved actions
    not yet started wait. Resume with `aiops agents resume AGENT|--all`. Signed with your key;
    needs the pause role (operator, sre or admin by default).""",
)
_fleet_verb(
    "resume",
    AgentVerb.RESUME,
    """Resume a paused agent, or every agent (--all). Needs the resume role (sre or admin).""",
)
_fleet_verb(
    "upgrade",
    AgentVerb.UPGRADE,
    """Move an agent, or every agent (--all), to the workflow code its workers run now: it
    continues as new at the next safe point (the batch in hand decided, handlers finished),
    keeping its state, queue and pending actions. Use after deploying a new build (see
    docs/deploy.md). Needs the upgrade role (sre or admin by default).""",
)


@app.command("reset-breaker")
def reset_breaker(ctx: typer.Context, agent: AgentArg, who: AsOption = None, key: KeyOption = None) -> None:
    """Close an agent's open circuit breaker: automatic execution resumes under its policy.
    Needs the reset-circuit-breaker role (sre or admin by default)."""
    actor, key_file = signer(key, who)
    applied = run(
        ctx, lambda aiops: aiops.agents.reset_circuit_breaker(agent, by=actor, key=key_file), agent_id=agent
    )
    emit(
        ctx,
        {"agent_id": agent, "requested": "reset_circuit_breaker", **_applied(applied)},
        lambda: typer.echo(
            f"agent {agent}: circuit breaker "
            + ("closed" if applied.changed else "was not open")
            + f" (by {applied.actor}, {_proof(applied)})"
        ),
    )


@app.command("token")
def token(
    ctx: typer.Context,
    agent: AgentArg,
    verb: Annotated[
        AgentVerb,
        typer.Argument(metavar="VERB", help="pause, resume, stop, reset-circuit-breaker or upgrade"),
    ],
    drain: DrainOption = True,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (stop), for the audit log")] = "",
    key: KeyOption = None,
    minutes: Annotated[
        int, typer.Option("--minutes", min=1, max=24 * 60, help="how long the token is valid (default 15)")
    ] = 15,
) -> None:
    """Print a signed command as JSON, to paste into the Temporal Web UI's Send a Signal box
    (signal named like the verb; reset-circuit-breaker is `reset_circuit_breaker`) or pass to
    `temporal workflow signal --input`. Bound to this agent and the verb (and, for stop, to
    --drain/--no-drain), valid for --minutes, and usable once."""
    if verb == AgentVerb.RECONFIGURE:
        raise BadInput("a config change is signed by `aiops config apply --key FILE`, not pasted")
    key_file = key_for(key, None)
    if key_file is None:
        raise BadInput(
            "no key to sign with: pass --key FILE, set AIOPS_KEY_FILE, or `aiops keys generate NAME`"
        )

    async def work(aiops: AiopsClient) -> dict[str, object]:
        request = aiops.agents.command_request(
            agent, verb, key=key_file, reason=reason, drain=drain, lifetime_seconds=minutes * 60
        )
        body = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True, exclude={"verb"})
        body["actor"] = request.actor
        if verb == AgentVerb.STOP:
            body["drain"] = drain
        return body

    body = run(ctx, work, agent_id=agent)
    emit_pasteable_signal(ctx, agent_workflow_id(agent), _SIGNALS[verb], body, minutes, {"agent_id": agent})


_SIGNALS = {
    AgentVerb.PAUSE: agent_contract.PAUSE,
    AgentVerb.RESUME: agent_contract.RESUME,
    AgentVerb.STOP: agent_contract.STOP,
    AgentVerb.RESET_CIRCUIT_BREAKER: agent_contract.RESET_CIRCUIT_BREAKER,
    AgentVerb.UPGRADE: agent_contract.UPGRADE,
}
