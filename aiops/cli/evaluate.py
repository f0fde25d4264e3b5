"""``aiops eval``: evaluate the llm diagnoser offline on recorded incidents.

    aiops eval run [CASES...] [--settings CANDIDATE.json] [--only ID] [--min-accuracy 0.8]
    aiops eval export AGENT [--since 7d] [--out cases.jsonl]

``run`` replays each case (default: the shipped set) with the candidate's model, prompt
(``instructions``) or catalog, answering the model's tool calls from the recording, and scores the
answers against the labels; in-process, no Temporal, no database, read-only. ``export`` turns an
llm agent's real diagnoses (its ``llm_diagnosis`` audit rows, the diagnosis workflows' input and
result, the actions' approval and verification rows) into cases of the same format. See
docs/agents/llm.md, "Evaluation".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.service import RPCError, RPCStatusCode

from agents.llm.contracts import DiagnosisInput, diagnosis_workflow_id
from agents.llm.evaluation import CaseScore, EvalInputError, Report, evaluate, load_candidate, load_cases
from agents.llm.evaluation.cases import MAX_FILE_BYTES, Case
from agents.llm.evaluation.export import case_from_recording
from agents.llm.proposal import DiagnosisResult
from agents.llm.settings import LlmSettings
from aiops.cli.audit import parse_since
from aiops.cli.common import run
from aiops.cli.output import BadInput, Failed, console, emit, pairs, table
from aiops.client import AiopsClient

app = typer.Typer(help="Evaluate the llm diagnoser offline on recorded incidents.", no_args_is_help=True)


def _candidate(path: Path | None) -> tuple[LlmSettings | None, set[str]]:
    if path is None:
        return None, set()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BadInput(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read it: {err}") from None
    try:
        candidate = load_candidate(text, str(path))
    except EvalInputError as err:
        raise BadInput(str(err)) from None
    return candidate, set(candidate.model_fields_set)  # the fields the file sets


def _render(report: Report) -> None:
    out = console()
    out.print(
        table(
            [
                "case",
                "expected",
                "proposed",
                "verdict",
                "tool calls",
                "unrecorded",
                "tokens in/out",
                "seconds",
            ],
            [
                (
                    s.id,
                    s.expected,
                    s.proposed,
                    s.verdict,
                    s.tool_calls,
                    s.unrecorded_calls,
                    f"{s.input_tokens}/{s.output_tokens}",
                    f"{s.seconds:.2f}",
                )
                for s in report.cases
            ],
        )
    )
    m = report.summary
    out.print(
        pairs(
            [
                ("model", m.model),
                (
                    "accuracy",
                    f"{m.accuracy:.1%} ({m.right} of {m.scored} scored)" if m.accuracy is not None else "-",
                ),
                ("right / wrong / miss / error", f"{m.right} / {m.wrong} / {m.miss} / {m.error}"),
                ("unscored (label unknown)", m.unscored),
                ("out-of-catalog attempts", m.out_of_catalog),
                ("unrecorded tool calls", m.unrecorded_calls),
                ("tokens in / out", f"{m.input_tokens} / {m.output_tokens}"),
                ("time", f"{m.seconds:.1f}s ({m.mean_seconds:.2f}s per case)"),
            ]
        )
    )


@app.command("run")
def run_eval(
    ctx: typer.Context,
    cases: Annotated[
        list[Path] | None,
        typer.Argument(
            help="case files (.jsonl, .json) or folders; default: the shipped set", show_default=False
        ),
    ] = None,
    candidate_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            "-s",
            help="the candidate: an llm agent config or its settings; the fields it sets (endpoint, "
            "catalog, tools, instructions, budgets) replace the recorded ones",
        ),
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="only these case ids (repeatable)")] = None,
    case_timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, max=3600.0, help="seconds one case may take")
    ] = 300.0,
    min_accuracy: Annotated[
        float | None,
        typer.Option("--min-accuracy", min=0.0, max=1.0, help="exit 1 when the accuracy is below this"),
    ] = None,
) -> None:
    """Replay recorded cases against a candidate model, prompt or catalog, and score them.

    Read-only: tool calls are answered from the recording (one not recorded gets "not available in
    the recording" and is counted), nothing is executed, nothing is audited."""
    import agents.llm.scripted  # noqa: F401  (registers the scripted models: --settings may name them)

    candidate, given = _candidate(candidate_file)
    try:
        loaded = load_cases(list(cases) if cases else None)
    except EvalInputError as err:
        raise BadInput(str(err)) from None
    if only:
        wanted = set(only)
        unknown = sorted(wanted - {c.id for c in loaded})
        if unknown:
            raise BadInput(f"--only: no case named {', '.join(repr(u[:80]) for u in unknown[:5])}")
        loaded = [c for c in loaded if c.id in wanted]
    width = len(str(len(loaded)))

    def progress(index: int, scored: CaseScore) -> None:
        print(
            f"[{index:>{width}}/{len(loaded)}] {scored.id}: {scored.verdict} ({scored.seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    try:
        report = asyncio.run(evaluate(loaded, candidate, given, case_timeout, progress))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    emit(ctx, report, lambda: _render(report))
    accuracy = report.summary.accuracy
    if min_accuracy is not None and (accuracy is None or accuracy < min_accuracy):
        raise Failed(
            f"accuracy {accuracy if accuracy is not None else '-'} is below --min-accuracy {min_accuracy}"
        )


async def _export(aiops: AiopsClient, agent: str, since: Any, limit: int) -> tuple[list[Case], list[str]]:
    rows = await aiops.audit.rows(agent_id=agent, since=since, limit=limit)
    cases: list[Case] = []
    skipped: list[str] = []
    converter = aiops.client.data_converter
    for row in rows:
        if row.step != "llm_diagnosis":
            continue
        event_id = str(row.detail.get("event_id", ""))
        workflow_id = diagnosis_workflow_id(agent, event_id)
        try:
            history = await aiops.client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            skipped.append(f"{event_id}: its diagnosis workflow is gone (past the namespace's retention)")
            continue
        started = history.events[0].workflow_execution_started_event_attributes
        done = [e for e in history.events if e.HasField("workflow_execution_completed_event_attributes")]
        if not done:
            skipped.append(f"{event_id}: its diagnosis did not complete")
            continue
        [request] = await converter.decode(started.input.payloads, [DiagnosisInput])
        [result] = await converter.decode(
            done[-1].workflow_execution_completed_event_attributes.result.payloads, [DiagnosisResult]
        )
        action_rows = (
            [{"step": r.step, "detail": r.detail} for r in await aiops.audit.rows(action_id=row.action_id)]
            if row.action_id
            else []
        )
        cases.append(case_from_recording(request, result, action_rows))
    return cases, skipped


@app.command("export")
def export(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="the llm agent whose diagnoses to export")],
    since: Annotated[
        str | None, typer.Option("--since", metavar="7d|ISO-TIME", help="only diagnoses since then")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the cases here (JSON Lines); default: stdout")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100_000, help="audit rows to read at most")
    ] = 10_000,
) -> None:
    """Export an llm agent's recorded diagnoses as eval cases (JSON Lines), labelled by the human
    outcome: approved and verified → right; rejected → wrong; otherwise unknown (label it by hand).
    Needs DATABASE_URL and Temporal; reads only."""
    start = parse_since(since) if since else None
    cases, skipped = run(ctx, lambda aiops: _export(aiops, agent, start, limit))
    lines = "".join(c.model_dump_json(exclude_defaults=True) + "\n" for c in cases)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    if out is None:
        sys.stdout.write(lines)
        return
    try:
        out.write_text(lines, encoding="utf-8")
    except OSError as err:
        raise Failed(f"{out}: cannot write it: {err}") from None
    summary = {"exported": len(cases), "skipped": len(skipped), "file": str(out)}
    emit(ctx, summary, lambda: print(f"exported {len(cases)} case(s) to {out}; skipped {len(skipped)}"))


__all__ = ["app"]
