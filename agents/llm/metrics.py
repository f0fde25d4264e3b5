"""The llm agent's Prometheus metrics, recorded from the diagnosis workflow (replay-safe).

``workflow.metric_meter()`` records nothing while a workflow replays, so each diagnosis counts
once however often its history is replayed or its worker replaced. The worker's ``/metrics``
exposes them (``aiops/metrics.py``) under these names:

- ``aiops_llm_diagnoses_total{agent_id, outcome}``: one per diagnosis; ``outcome`` is
  ``proposal``, ``none_proposed`` (the model proposed nothing), ``out_of_catalog`` (a proposal the
  catalog refused), ``model_error`` (down, garbage), ``timeout``, ``budget_per_event`` or
  ``budget_per_hour`` (refused for budget);
- ``aiops_llm_requests_total{agent_id, model}``: model requests;
- ``aiops_llm_tokens_total{agent_id, model, kind}``: ``kind`` ``input`` or ``output``;
- ``aiops_llm_tool_calls_total{agent_id, tool, ok}``: read-only tool calls;
- ``aiops_llm_diagnosis_duration_seconds{agent_id, outcome}``: workflow time from start to result.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from agents.llm.proposal import DiagnosisResult

DIAGNOSES = "aiops_llm_diagnoses_total"
REQUESTS = "aiops_llm_requests_total"
TOKENS = "aiops_llm_tokens_total"
TOOL_CALLS = "aiops_llm_tool_calls_total"
DURATION = "aiops_llm_diagnosis_duration_seconds"

OUTCOMES = (
    "proposal",
    "none_proposed",
    "out_of_catalog",
    "model_error",
    "timeout",
    "budget_per_event",
    "budget_per_hour",
)


def record(result: DiagnosisResult, outcome: str, took: timedelta) -> None:
    """Count one finished diagnosis (in workflow code; nothing during a replay)."""
    meter = workflow.metric_meter()
    agent = {"agent_id": result.agent_id}
    meter.create_counter(DIAGNOSES, "llm diagnoses by outcome").add(1, {**agent, "outcome": outcome})
    usage = result.usage
    model = {**agent, "model": result.model}
    if usage.requests:
        meter.create_counter(REQUESTS, "llm model requests").add(usage.requests, model)
    tokens = meter.create_counter(TOKENS, "llm tokens by kind (input, output)")
    if usage.input_tokens:
        tokens.add(usage.input_tokens, {**model, "kind": "input"})
    if usage.output_tokens:
        tokens.add(usage.output_tokens, {**model, "kind": "output"})
    calls = meter.create_counter(TOOL_CALLS, "llm read-only tool calls")
    for call in result.tool_calls:
        calls.add(1, {**agent, "tool": call.tool, "ok": str(call.ok).lower()})
    meter.create_histogram_timedelta(
        DURATION, "time from a diagnosis' start to its result", "duration"
    ).record(took, {**agent, "outcome": outcome})
