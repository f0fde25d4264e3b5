"""Scoring a replayed case against its label, and the report over a set of cases.

Verdicts: ``right`` (the labelled action, or nothing when nothing is right), ``wrong`` (another
action, an action where none is right, or the proposal a person rejected), ``miss`` (nothing
proposed where an action is right), ``error`` (no usable answer: model down, garbage, timeout,
budget), ``unscored`` (the label is unknown). Accuracy is right / scored (scored = all but
unscored). An out-of-catalog attempt (a proposal the catalog check refused) never becomes an
action: it is scored as "nothing proposed" and counted on its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agents.llm.evaluation.cases import Case, Label, Target
from agents.llm.evaluation.replay import CaseRun
from aiops.contracts.fields import same_named

Verdict = Literal["right", "wrong", "miss", "error", "unscored"]
ERROR_OUTCOMES = frozenset({"model_error", "timeout", "budget_per_event", "budget_per_hour"})


def matches(proposal: Target, wanted: Target) -> bool:
    """Same catalog entry; the target equal to (or, for a label written as a pattern, matching) it."""
    return proposal.catalog_entry == wanted.catalog_entry and fnmatch.fnmatchcase(
        proposal.target, wanted.target
    )


def verdict(label: Label, proposal: Target | None, failed: bool) -> Verdict:
    if label.rejected is not None and proposal is not None and matches(proposal, label.rejected):
        return "wrong"
    if label.expected == "unknown":
        return "unscored"
    if failed and proposal is None:
        return "error"
    if label.expected == "action":
        assert label.action is not None
        if proposal is None:
            return "miss"
        return "right" if matches(proposal, label.action) else "wrong"
    return "right" if proposal is None else "wrong"


class CaseScore(BaseModel):
    id: str
    title: str = ""
    expected: str  # "entry on target", "no action" or "unknown"
    proposed: str  # "entry on target", "-" or "refused: entry on target"
    verdict: Verdict
    out_of_catalog: bool = False
    tool_calls: int = 0
    unrecorded_calls: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    reason: str | None = None  # why nothing was proposed, when nothing was
    summary: str | None = None  # the model's diagnosis
    unrecorded: list[str] = Field(default_factory=list)


def _describe(target: Target | None) -> str:
    return f"{target.catalog_entry} on {target.target}" if target is not None else "-"


def score(case: Case, run: CaseRun) -> CaseScore:
    result = run.result
    proposal = (
        Target(catalog_entry=result.proposal.catalog_entry, target=result.proposal.target)
        if result.proposal is not None
        else None
    )
    label = case.label
    expected = {"action": _describe(label.action), "no_action": "no action", "unknown": "unknown"}[
        label.expected
    ]
    if label.rejected is not None:
        expected += f" (rejected: {_describe(label.rejected)})"
    out_of_catalog = run.outcome == "out_of_catalog"
    proposed = _describe(proposal)
    if out_of_catalog:
        proposed = "refused: " + (result.no_proposal_reason or "")[len("proposal refused: ") :][:120]
    return CaseScore(
        id=case.id,
        title=case.title,
        expected=expected,
        proposed=proposed,
        verdict=verdict(label, proposal, run.outcome in ERROR_OUTCOMES),
        out_of_catalog=out_of_catalog,
        tool_calls=len(result.tool_calls),
        reason=result.no_proposal_reason,
        summary=result.diagnosis.summary[:300] if result.diagnosis else None,
        **same_named(run, "unrecorded_calls", "seconds", "unrecorded"),
        **same_named(result.usage, "requests", "input_tokens", "output_tokens"),
    )


class Summary(BaseModel):
    model: str
    cases: int
    scored: int
    right: int
    wrong: int
    miss: int
    error: int
    unscored: int
    accuracy: float | None  # right / scored; None when nothing is scored
    out_of_catalog: int  # cases with a proposal the catalog refused
    unrecorded_calls: int  # tool calls answered "not available in the recording"
    input_tokens: int
    output_tokens: int
    seconds: float  # the whole run
    mean_seconds: float  # per case


class Report(BaseModel):
    summary: Summary
    cases: list[CaseScore]


def report(model: str, scores: Sequence[CaseScore], seconds: float) -> Report:
    counts = {
        v: sum(1 for s in scores if s.verdict == v) for v in ("right", "wrong", "miss", "error", "unscored")
    }
    scored = len(scores) - counts["unscored"]
    return Report(
        summary=Summary(
            model=model,
            cases=len(scores),
            scored=scored,
            accuracy=round(counts["right"] / scored, 3) if scored else None,
            out_of_catalog=sum(1 for s in scores if s.out_of_catalog),
            unrecorded_calls=sum(s.unrecorded_calls for s in scores),
            input_tokens=sum(s.input_tokens for s in scores),
            output_tokens=sum(s.output_tokens for s in scores),
            seconds=round(seconds, 2),
            mean_seconds=round(sum(s.seconds for s in scores) / len(scores), 2) if scores else 0.0,
            **counts,
        ),
        cases=list(scores),
    )
