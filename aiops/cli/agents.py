"""``aiops agents``: list, inspect, start, stop, pause and resume agents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agents.models import AgentConfig
from aiops.cli.common import current_user, load_config, run
from aiops.cli.output import BadInput, Failed, console, emit, pairs, say, table, when
from aiops.client import AiopsClient
from workflows.agent_contract import AgentState, AgentStatus, agent_workflow_id

app = typer.Typer(help="List, inspect, start, stop, pause and resume agents.", no_args_is_help=True)

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="the agent's id")]


def pending_approvals(status: AgentStatus) -> int:
    return sum(1 for p in status.pending_actions if p.status == "pending_approval")


@app.command("list")
def list_agents(
    ctx: typer.Context,
    state: Annotated[AgentState | None, typer.Option("--state", help="only agents in this state")] = None,
) -> None:
    """Running agents: id, type, state, config version, events processed, pending approvals."""
    statuses = run(ctx, lambda aiops: aiops.agent_statuses(state))

    def render() -> None:
        if not statuses:
            say(ctx, "no agents are running")
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


@app.command("status")
def status(ctx: typer.Context, agent: AgentArg) -> None:
    """One agent's state, counters, queue and pending actions."""
    s = run(ctx, lambda aiops: aiops.status(agent), agent_id=agent)

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
                ("circuit breaker", "OPEN (needs reset_circuit_breaker)" if s.circuit_open else "closed"),
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
        typer.Option(
            "--config",
            "-c",
            metavar="FILE.json",
            help="start the agent this AgentConfig (JSON) describes",
            dir_okay=False,
            allow_dash=True,
        ),
    ] = None,
    started_by: Annotated[
        str | None,
        typer.Option(
            "--as", metavar="NAME", help="who starts it (default: $AIOPS_USER, else your user name)"
        ),
    ] = None,
) -> None:
    """Start an agent from a config file, or restart one from its latest stored config.

    Starting an agent that already runs changes nothing: with the same config it
    succeeds, with a different one it fails and says to use `aiops config apply`.
    """
    if (agent is None) == (config_file is None):
        raise BadInput("give either --config FILE.json or the AGENT id to restart from its stored config")
    config = load_config(config_file) if config_file is not None else None
    who = current_user(started_by)

    async def work(aiops: AiopsClient) -> dict[str, object]:
        nonlocal config
        agent_id = config.id if config is not None else str(agent)
        if await aiops.agent_is_running(agent_id):
            if config is not None:
                running = (await aiops.status(agent_id)).config
                if _settings_of(running) != _settings_of(config):
                    raise Failed(
                        f"agent {agent_id} is already running with a different config "
                        f"(version {running.version}); change it with `aiops config apply FILE.json`"
                    )
            return {"agent_id": agent_id, "workflow_id": agent_workflow_id(agent_id), "started": False}
        if config is None:
            config = (await aiops.latest_config(agent_id)).config
        handle = await aiops.start_agent(config, started_by=who)
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
    drain: Annotated[
        bool,
        typer.Option("--drain/--no-drain", help="decide the queued events first (default), or drop them"),
    ] = True,
) -> None:
    """Stop an agent; running actions finish on their own."""
    run(ctx, lambda aiops: aiops.stop(agent, reason=reason, drain=drain), agent_id=agent)
    emit(
        ctx,
        {"agent_id": agent, "requested": "stop", "reason": reason, "drain": drain},
        lambda: typer.echo(
            f"asked agent {agent} to stop" + (" after deciding its queued events" if drain else " now")
        ),
    )


@app.command("pause")
def pause(ctx: typer.Context, agent: AgentArg) -> None:
    """Pause an agent: events queue up, approved actions not yet started wait."""
    run(ctx, lambda aiops: aiops.pause(agent), agent_id=agent)
    emit(ctx, {"agent_id": agent, "requested": "pause"}, lambda: typer.echo(f"asked agent {agent} to pause"))


@app.command("resume")
def resume(ctx: typer.Context, agent: AgentArg) -> None:
    """Resume a paused agent."""
    run(ctx, lambda aiops: aiops.resume(agent), agent_id=agent)
    emit(
        ctx, {"agent_id": agent, "requested": "resume"}, lambda: typer.echo(f"asked agent {agent} to resume")
    )
