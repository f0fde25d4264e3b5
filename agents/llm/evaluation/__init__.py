"""``aiops eval``: an offline evaluation of the llm diagnoser on recorded incidents.

Read-only by construction: the model's tool calls are answered from the recording
(``replay.ReplayToolset``), nothing starts an action, nothing writes the audit chain, no Temporal
is needed. ``cases`` (the case format, the shipped set, bounded loading), ``replay`` (one case
through the real prompt, tools and proposal checks), ``scoring`` (verdicts and the report),
``export`` (real recordings into cases). See docs/agents/llm.md, "Evaluation".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from agents.llm.evaluation.cases import DATASET, Case, EvalInputError, load_candidate, load_cases
from agents.llm.evaluation.replay import DEFAULT_TIMEOUT_SECONDS, effective_settings, replay_case
from agents.llm.evaluation.scoring import CaseScore, Report, report, score
from agents.llm.settings import LlmSettings


async def evaluate(
    cases: Sequence[Case],
    candidate: LlmSettings | None,
    given: set[str],
    case_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    progress: Callable[[int, CaseScore], None] | None = None,
) -> Report:
    """Replay and score every case, one at a time (a local model serves one request at once)."""
    started = time.monotonic()
    scores: list[CaseScore] = []
    for index, case in enumerate(cases, 1):
        run = await replay_case(case, candidate, given, case_timeout)
        scored = score(case, run)
        scores.append(scored)
        if progress is not None:
            progress(index, scored)
    model = effective_settings(cases[0], candidate, given).endpoint if cases else None
    name = f"{model.provider}:{model.model}" if model is not None else "-"
    return report(name, scores, time.monotonic() - started)


__all__ = [
    "DATASET",
    "Case",
    "CaseScore",
    "EvalInputError",
    "Report",
    "evaluate",
    "load_candidate",
    "load_cases",
]
