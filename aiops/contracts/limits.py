"""Size budgets shared by every producer of a payload, so each refuses where it produces.

Temporal refuses any payload over 2 MiB (``PAYLOADS_TOO_LARGE``): a workflow task that would
schedule one fails, and replays into the same failure on every retry, so the workflow is stuck
until a person steps in. The budgets below keep every value well under that limit and are checked
by whoever builds the value (the client, the gateway, the llm plugin), before anything is sent.
One home for the numbers, so a producer and the workflow that receives its value never disagree.
"""

from __future__ import annotations

import json
from typing import Any

# Temporal's own limit on one payload (the server's default blob size limit).
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024

# One event, as the agent's intake measures it (``len(event.model_dump_json())``).
MAX_EVENT_BYTES = 32_000
# The events of one intake update together, as JSON: half of Temporal's limit, so the update's
# own envelope and its answer always fit.
MAX_INTAKE_BYTES = 1_000_000

# The input of one action workflow (an ``AgentAction`` with everything its proposer attached):
# an action waits for approval with it in its history, and approvers read it.
MAX_ACTION_INPUT_BYTES = 256 * 1024

# llm plugin: one tool call's arguments as the model wrote them; a call over this is refused
# (the model sees the refusal) and its arguments are never recorded.
MAX_TOOL_ARGUMENT_BYTES = 16 * 1024
# What a diagnosis keeps of its tool calls (its result crosses back into the agent's workflow).
MAX_RECORDED_TOOL_CALLS = 50
MAX_RECORDED_ARGUMENT_BYTES = 2048
MAX_RECORDED_RESULT_BYTES = 16 * 1024
# One model request (the whole conversation so far) and one model answer.
MAX_MODEL_REQUEST_BYTES = 1_000_000
MAX_MODEL_ANSWER_BYTES = 256 * 1024

# What ``json_size`` answers for a value too deep to encode: over every budget.
UNMEASURABLE = 2**62

TRUNCATED_MARKER = "[truncated: {size} bytes, over the {limit}-byte limit]"


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, as Temporal's JSON converter would send it.

    A value nested too deep to encode measures ``UNMEASURABLE``; NaN and infinities are measured
    as their literals (whether they are acceptable is the receiver's model's business).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return UNMEASURABLE
    return len(text.encode("utf-8", "surrogatepass"))


def over_budget(what: str, size: int, limit: int) -> str:
    """The one message every producer gives: what, how large, the limit."""
    return f"{what} is {size} bytes, over the {limit}-byte limit"
