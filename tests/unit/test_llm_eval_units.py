"""``aiops eval``'s pure parts: scoring, matching calls to the recording, hostile case files, labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.tools import ToolDefinition

from agents.llm.evaluation.cases import (
    DATASET,
    MAX_FILE_BYTES,
    EvalInputError,
    Label,
    Target,
    load_candidate,
    load_cases,
    parse_cases,
)
from agents.llm.evaluation.export import label_from_rows
from agents.llm.evaluation.replay import call_key
from agents.llm.evaluation.scoring import matches, verdict
from agents.llm.proposal import DiagnosisResult, ProposedAction

RESTART = Target(catalog_entry="restart-service", target="service/checkout")
OTHER = Target(catalog_entry="restart-service", target="service/cart")
ACTION = Label(expected="action", action=RESTART)
NOTHING = Label(expected="no_action")


# ----- scoring ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "proposal", "failed", "expected"),
    [
        (ACTION, RESTART, False, "right"),
        (ACTION, OTHER, False, "wrong"),
        (ACTION, Target(catalog_entry="page-owner", target="service/checkout"), False, "wrong"),
        (ACTION, None, False, "miss"),
        (ACTION, None, True, "error"),
        (NOTHING, None, False, "right"),
        (NOTHING, RESTART, False, "wrong"),
        (NOTHING, None, True, "error"),
        (Label(expected="unknown"), RESTART, False, "unscored"),
        (Label(expected="unknown", rejected=RESTART), RESTART, False, "wrong"),
        (Label(expected="unknown", rejected=RESTART), OTHER, False, "unscored"),
        (Label(expected="unknown", rejected=RESTART), None, False, "unscored"),
    ],
)
def test_each_verdict(label: Label, proposal: Target | None, failed: bool, expected: str) -> None:
    assert verdict(label, proposal, failed) == expected


def test_a_label_target_may_be_a_pattern_but_a_proposal_is_matched_literally() -> None:
    assert matches(RESTART, Target(catalog_entry="restart-service", target="service/*"))
    assert not matches(Target(catalog_entry="restart-service", target="service/*"), RESTART)


def test_a_label_says_action_exactly_when_it_names_one() -> None:
    with pytest.raises(ValueError, match=r"label\.action"):
        Label(expected="action")
    with pytest.raises(ValueError, match=r"label\.action"):
        Label(expected="no_action", action=RESTART)


# ----- matching a call to the recording ---------------------------------------------------------

TAIL = ToolDefinition(
    name="read_file_tail",
    parameters_json_schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "tail_lines": {"type": "integer", "default": 100}},
    },
)


def test_a_call_matches_its_recording_whatever_the_spelling_of_its_arguments() -> None:
    recorded = call_key("read_file_tail", {"path": "/var/log/a.log", "tail_lines": 100}, TAIL)
    assert call_key("read_file_tail", {"path": "/var/log/a.log"}, TAIL) == recorded  # the default
    assert call_key("read_file_tail", {"tail_lines": 100.0, "path": " /var/log/a.log "}, TAIL) == recorded
    q = call_key("prometheus_query", {"query": "up", "at": None})
    assert q == call_key("prometheus_query", {"query": "up"})  # a null is an absent argument


def test_another_tool_or_other_arguments_do_not_match() -> None:
    recorded = call_key("read_file_tail", {"path": "/var/log/a.log", "tail_lines": 20}, TAIL)
    assert call_key("read_file_tail", {"path": "/var/log/a.log"}, TAIL) != recorded
    assert call_key("read_file_tail", {"path": "/var/log/b.log", "tail_lines": 20}, TAIL) != recorded
    assert call_key("prometheus_query", {"path": "/var/log/a.log", "tail_lines": 20}, TAIL) != recorded
    assert call_key("dry_run_plan", {"targets": ["a", "b"]}) != call_key(
        "dry_run_plan", {"targets": ["b", "a"]}
    )


# ----- the shipped set ----------------------------------------------------------------------------


def test_the_shipped_set_loads_and_covers_the_incident_kinds() -> None:
    cases = load_cases()
    assert len(cases) >= 20
    ids = " ".join(c.id for c in cases)
    for kind in ("disk-full", "oom", "crashloop", "lock-chain", "bloat", "drift", "cert-expiry"):
        assert kind in ids
    assert any(c.label.expected == "no_action" for c in cases)
    assert all(c.tool_calls for c in cases)  # every case has recorded tool answers
    for case in cases:  # every labelled action is a valid proposal of the case's own catalog
        settings = case.recorded_settings()
        if case.label.action is not None:
            assert settings.entry(case.label.action.catalog_entry) is not None, case.id


# ----- hostile files -----------------------------------------------------------------------------


def _case(**changes: Any) -> dict[str, Any]:
    case = json.loads((DATASET / "incidents.jsonl").read_text().splitlines()[0])
    case.update(changes)
    return case


@pytest.mark.parametrize(
    ("text", "name", "said"),
    [
        ("not json at all", "x.json", "x.json: not valid JSON"),
        ('{"id": "a"}\nnot json\n', "x.jsonl", "x.jsonl line 1: invalid case"),
        ("[1, 2]", "x.json", "x.json case 1: a case is a JSON object, got int"),
        ("[" * 100_000 + "]" * 100_000, "x.json", "x.json"),
        (json.dumps(_case(id="has space")), "x.json", "id: String should match pattern"),
        (json.dumps(_case(tool_calls="nope")), "x.json", "tool_calls"),
        (json.dumps(_case(label={"expected": "maybe"})), "x.json", "label.expected"),
        (json.dumps(_case(alert={"type": "alert"})), "x.json", "alert.source: Field required"),
        (json.dumps(_case(settings={"catalog": "x"})), "x.json", "invalid case: catalog"),
        (json.dumps(_case(surprise=1)), "x.json", "surprise: Extra inputs are not permitted"),
    ],
)
def test_a_hostile_case_file_is_one_clear_error(text: str, name: str, said: str) -> None:
    with pytest.raises(EvalInputError) as caught:
        parse_cases(text, name)
    assert said in str(caught.value)
    assert "Traceback" not in str(caught.value) and len(str(caught.value)) < 600


def test_files_too_large_missing_binary_or_duplicated_are_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(EvalInputError, match="more than the"):
        load_cases([huge])
    with pytest.raises(EvalInputError, match="no such file"):
        load_cases([tmp_path / "absent.jsonl"])
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EvalInputError, match="not UTF-8"):
        load_cases([binary])
    twice = tmp_path / "twice.jsonl"
    line = json.dumps(_case())
    twice.write_text(f"{line}\n{line}\n")
    with pytest.raises(EvalInputError, match="appears twice"):
        load_cases([twice])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalInputError, match="no cases found"):
        load_cases([empty])


def test_a_candidate_is_llm_settings_or_an_llm_agent_config() -> None:
    endpoint = {"endpoint": {"provider": "registered", "model": "m"}}
    assert load_candidate(json.dumps(endpoint), "c").endpoint.model == "m"
    config = {"id": "x", "type": "llm", "settings": endpoint}
    assert load_candidate(json.dumps(config), "c").endpoint.model == "m"
    with pytest.raises(EvalInputError, match="type 'script', not llm"):
        load_candidate(json.dumps({**config, "type": "script"}), "c")
    with pytest.raises(EvalInputError, match=r"endpoint\.model"):
        load_candidate(json.dumps({"endpoint": {"model": ""}}), "c")
    with pytest.raises(EvalInputError, match="a JSON object, got list"):
        load_candidate("[]", "c")


# ----- labels from the human outcome --------------------------------------------------------------


def _result(proposal: bool = True) -> DiagnosisResult:
    return DiagnosisResult(
        agent_id="a",
        event_id="e",
        proposal=ProposedAction(catalog_entry="restart-service", target="service/checkout")
        if proposal
        else None,
    )


def test_the_human_outcome_is_the_label() -> None:
    approved = {"step": "approval", "detail": {"approved": True}}
    verified = {"step": "verification", "detail": {"verified": True}}
    rejected = {"step": "approval", "detail": {"approved": False}}
    label = label_from_rows(_result(), [approved, verified])
    assert label.expected == "action" and label.action == RESTART and label.source == "approved and verified"
    label = label_from_rows(_result(), [rejected])
    assert label.expected == "unknown" and label.rejected == RESTART
    assert label_from_rows(_result(), [approved]).expected == "unknown"  # not verified (yet)
    assert label_from_rows(
        _result(), [approved, {"step": "verification", "detail": {"verified": False}}]
    ).expected == ("unknown")
    assert label_from_rows(_result(proposal=False), [approved, verified]).expected == "unknown"
