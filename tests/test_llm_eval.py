"""``aiops eval``: the shipped set end to end with the scripted model, the CLI's exit codes and JSON,
another catalog, an export of real recorded diagnoses replayed, and (slow) the tiny local model.

The eval runs in-process without Temporal or PostgreSQL: the CLI tests point ``TEMPORAL_ADDRESS``
and ``DATABASE_URL`` at nothing, so a tool that reached a real system, an action started or an
audit row written would fail them. The recorded tool answers name hosts (``prometheus.monitoring``)
and files (``/var/log/...``) that do not exist here: every answer comes from the recording.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from typer.testing import CliRunner, Result

import agents.llm.scripted  # noqa: F401  (registers scripted-label)
from agents.llm.contracts import DiagnosisInput, diagnosis_task_queue, diagnosis_workflow_id
from agents.llm.evaluation import evaluate, load_cases
from agents.llm.evaluation.cases import DATASET
from agents.llm.evaluation.replay import NOT_RECORDED, replay_case
from agents.llm.settings import LlmSettings
from aiops.cli import app
from aiops.cli.evaluate import _export
from aiops.client import AiopsClient
from aiops.runtime.worker_build import WorkerGroup
from tests.helpers import event, eventually
from tests.support.llm_models import register, scripted

SCRIPTED = {"endpoint": {"provider": "registered", "model": "scripted-label"}}
OFFLINE_ENV = {
    "TEMPORAL_ADDRESS": "127.0.0.1:9",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    "COLUMNS": "250",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=OFFLINE_ENV)


def one_error(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    # Progress lines ("[1/2] case: verdict") may precede it; the error is one line, the last.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(SCRIPTED))
    return path


def test_the_shipped_set_end_to_end_with_the_scripted_model(candidate: Path) -> None:
    result = invoke("-o", "json", "eval", "run", "--settings", str(candidate))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    summary, cases = report["summary"], {c["id"]: c for c in report["cases"]}
    total = len(load_cases())
    assert summary["cases"] == total >= 20 and summary["scored"] == total
    # It follows every label but one: where its script proposes out of the catalog, the catalog
    # check refuses it, nothing is proposed and the case is a miss.
    assert (
        summary["right"] == total - 1 and summary["miss"] == 1 and summary["wrong"] == summary["error"] == 0
    )
    assert summary["out_of_catalog"] == 1
    wal = cases["disk-full-pg-wal"]
    assert wal["verdict"] == "miss" and wal["out_of_catalog"] and "drop-replication-slot" in wal["proposed"]
    # One call the recording does not hold: answered "not available", counted, the case still scored.
    assert summary["unrecorded_calls"] == 1
    spike = cases["traffic-spike-search"]
    assert spike["unrecorded_calls"] == 1 and spike["verdict"] == "right"
    assert "kube_horizontalpodautoscaler_spec_max_replicas" in spike["unrecorded"][0]
    assert all(c["input_tokens"] > 0 and c["requests"] >= 1 for c in cases.values())
    assert summary["accuracy"] == round((total - 1) / total, 3)
    assert result.stderr.count("\n") == total  # one progress line per case, on stderr


def test_the_table_and_the_accuracy_gate(candidate: Path) -> None:
    result = invoke("eval", "run", "--settings", str(candidate), "--only", "oom-kill-checkout")
    assert result.exit_code == 0, result.stderr
    assert "oom-kill-checkout" in result.stdout and "right" in result.stdout
    assert "accuracy" in result.stdout and "100.0% (1 of 1 scored)" in result.stdout
    gate = invoke(
        "eval", "run", "--settings", str(candidate), "--only", "disk-full-pg-wal", "--min-accuracy", "0.5"
    )
    one_error(gate, 1, "below --min-accuracy 0.5")


async def test_recorded_answers_reach_the_model_and_unrecorded_calls_do_not() -> None:
    [spike] = [c for c in load_cases() if c.id == "traffic-spike-search"]
    candidate = LlmSettings.model_validate(SCRIPTED)
    run = await replay_case(spike, candidate, {"endpoint"})
    calls = run.result.tool_calls
    assert [c.tool for c in calls] == ["prometheus_query"] * 4
    assert '"value":[1795144440,"4812.4"]' in calls[0].result  # the recorded answer, as recorded
    assert NOT_RECORDED in calls[3].result and not calls[3].ok
    assert run.unrecorded_calls == 1


def test_another_catalog_changes_the_verdict(tmp_path: Path) -> None:
    """A candidate catalog without ``purge-old-logs``: the labelled answer is now out of catalog."""
    [case] = [c for c in load_cases() if c.id == "disk-full-web-logs"]
    catalog = [e for e in case.settings["catalog"] if e["name"] != "purge-old-logs"]
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps({**SCRIPTED, "catalog": catalog}))
    result = invoke("-o", "json", "eval", "run", "--settings", str(path), "--only", case.id)
    assert result.exit_code == 0, result.stderr
    [scored] = json.loads(result.stdout)["cases"]
    assert scored["verdict"] == "miss" and scored["out_of_catalog"]


@pytest.mark.parametrize(
    ("setup", "args", "fragment"),
    [
        ("cases.jsonl", ["eval", "run", "{dir}/cases.jsonl"], "line 1: not valid JSON"),
        ("", ["eval", "run", "{dir}/absent.jsonl"], "absent.jsonl: no such file"),
        ("", ["eval", "run", "--settings", "{dir}/absent.json"], "absent.json: no such file"),
        (
            "bad.json",
            ["eval", "run", "--settings", "{dir}/bad.json"],
            "invalid llm settings: endpoint.provider",
        ),
        ("", ["eval", "run", "--only", "no-such-case"], "no case named 'no-such-case'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, setup: str, args: list[str], fragment: str) -> None:
    (tmp_path / "cases.jsonl").write_text("{not json\n")
    (tmp_path / "bad.json").write_text(json.dumps({"endpoint": {"provider": "telepathy"}}))
    result = invoke(*[a.replace("{dir}", str(tmp_path)) for a in args])
    one_error(result, 2, fragment)


def test_the_shipped_set_is_package_data() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert "eval_cases/*.jsonl" in pyproject
    assert (DATASET / "incidents.jsonl").is_file()


# ----- real recordings: export, then replay ------------------------------------------------------


async def test_export_turns_recorded_diagnoses_into_cases_that_replay(
    client: Client, worker: WorkerGroup, aiops: AiopsClient, tmp_path: Path
) -> None:
    """A diagnosis runs on the real worker (tool calls against a real log file); its audit row and
    workflow become a case; the scripted-label model replays it with the file gone: the recorded
    answer is what it gets."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "checkout.log").write_text("kernel: Out of memory: Killed process 42 (checkout)\n")
    agent_id = f"llm-{uuid.uuid4().hex[:8]}"
    model = scripted([("read_file_tail", {"path": str(logs / "checkout.log"), "tail_lines": 5})])
    settings = {
        "endpoint": register(f"export-{agent_id}", model),
        "catalog": [{"name": "restart-web", "action_type": "restart_service", "targets": ["service/*"]}],
        "tools": {"file_roots": [str(logs)]},
    }
    alert = event("alert", source="service/checkout", summary="checkout restarting")
    request = DiagnosisInput(
        agent_id=agent_id,
        task_queue=worker.task_queue,
        event=alert,
        settings=LlmSettings.model_validate(settings),
        timeout_seconds=60,
    )
    await client.execute_workflow(
        "DiagnosisWorkflow",
        request,
        id=diagnosis_workflow_id(agent_id, alert.id),
        task_queue=diagnosis_task_queue(worker.task_queue),
    )

    async def exported() -> list[Any]:
        cases, _ = await _export(aiops, agent_id, None, 100)
        return cases

    [case] = await eventually(exported, bool)
    assert case.alert.id == alert.id and case.label.expected == "unknown"  # no proposal: label by hand
    [call] = case.tool_calls
    assert call.tool == "read_file_tail" and "Out of memory" in call.result
    assert case.recorded["outcome"] == "none_proposed"

    (logs / "checkout.log").unlink()
    audited = len(await aiops.audit.rows(limit=100_000))
    replay = case.model_copy(update={"label": case.label.model_copy(update={"expected": "no_action"})})
    report = await evaluate([replay], LlmSettings.model_validate(SCRIPTED), {"endpoint"})
    [scored] = report.cases
    assert scored.verdict == "right" and scored.tool_calls == 1 and scored.unrecorded_calls == 0
    assert len(await aiops.audit.rows(limit=100_000)) == audited  # the eval wrote no audit row


# ----- the tiny local model (slow) -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(780)
async def test_a_few_cases_with_the_tiny_local_model(local_model: int) -> None:  # noqa: F811
    """Two cases through SmolLM2-135M: each answered (or failed) within its bound and scored;
    the toy's accuracy is reported, not asserted."""
    from agents.llm.local_model import endpoint

    cases = [c for c in load_cases() if c.id in ("oom-kill-checkout", "healthcheck-flap")]
    candidate = LlmSettings.model_validate({"endpoint": endpoint(local_model)})
    report = await evaluate(cases, candidate, {"endpoint"}, case_timeout=240)
    assert report.summary.cases == 2
    assert all(c.verdict != "unscored" for c in report.cases)
    assert report.summary.model == "openai:smollm2-135m"
    print(report.summary.model_dump_json())


from tests.test_agent_llm_local import local_model  # noqa: E402,F401  (the module-scoped server fixture)


def test_eval_commands_have_help() -> None:
    for command in (["eval"], ["eval", "run"], ["eval", "export"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0 and "Usage:" in result.stdout, (command, result.stdout)
