"""Size bounds on everything a diagnosis carries: the model's answers, its tool calls, its requests.

A model's output is untrusted and unbounded. Left alone, one tool call with a 2 MB argument is
recorded, sent back in the next model request and copied into the proposed action, and each of
those is a Temporal payload: over 2 MiB, the workflow task that schedules it fails on every retry
and the agent is stuck. So, at each place a value is produced:

- in the model-request activity, an answer's oversized tool-call arguments are replaced by a short
  marker (the activity's result stays small) and its text is cut (``bound_response``);
- in workflow code, a tool call whose arguments are over ``MAX_TOOL_ARGUMENT_BYTES`` (or carry the
  marker) is refused, and the model sees the refusal and its reason (``BoundedToolCalls``);
- before each model request, the oldest tool results are cut, with a marker, until the whole
  conversation fits ``MAX_MODEL_REQUEST_BYTES`` (``fit_history``).

Pure and deterministic (no I/O, no clock): the workflow-side parts run in workflow code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from pydantic_ai import ToolFailed
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.tools import RunContext, ToolDefinition

from agents.llm.contracts import DiagnosisDeps
from aiops.contracts.limits import (
    MAX_MODEL_ANSWER_BYTES,
    MAX_MODEL_REQUEST_BYTES,
    MAX_RECORDED_ARGUMENT_BYTES,
    MAX_TOOL_ARGUMENT_BYTES,
    json_size,
    over_budget,
)

# The key a tool call's arguments are replaced with when they were too large to keep.
OVERSIZED = "_aiops_refused_arguments"
CUT_MARKER = "\n[cut: {size} bytes, to keep the conversation under {limit} bytes]"


def arguments_size(args: Any) -> int:
    """Bytes of a tool call's arguments as the model wrote them (a JSON string or an object)."""
    if args is None:
        return 0
    if isinstance(args, str):
        return len(args.encode("utf-8", "surrogatepass"))
    return json_size(args)


def refusal(size: int) -> str:
    return (
        f"refused: the tool call's arguments are {size} bytes, over the {MAX_TOOL_ARGUMENT_BYTES}-byte "
        "limit of one call; call the tool with shorter arguments"
    )


def oversized(args: Any) -> str | None:
    """Why a tool call's arguments are refused, or None when they are within bounds."""
    if isinstance(args, dict) and OVERSIZED in args:
        return str(args[OVERSIZED])[:300]
    size = arguments_size(args)
    return refusal(size) if size > MAX_TOOL_ARGUMENT_BYTES else None


def recorded_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as the audit trail and the approver see them: small ones verbatim,
    others replaced by their size and a short prefix (never the whole value)."""
    size = json_size(args)
    if size <= MAX_RECORDED_ARGUMENT_BYTES:
        return args
    return {
        "_truncated": over_budget("the arguments", size, MAX_RECORDED_ARGUMENT_BYTES),
        "_prefix": repr(args)[:200],
    }


def bound_response(response: ModelResponse, output_tools: frozenset[str] = frozenset()) -> ModelResponse:
    """The model's answer with oversized tool-call arguments replaced by a marker and text cut to
    ``MAX_MODEL_ANSWER_BYTES``: run in the model-request activity, so its result stays small.

    A call of an output tool (``output_tools``: the answer itself, in ``tool`` output mode) is the
    answer, bounded like answer text: over ``MAX_MODEL_ANSWER_BYTES`` it is replaced by the marker
    too, which fails the answer's validation (repaired once, like garbage)."""
    parts: list[ModelResponsePart] = []
    changed = False
    for part in response.parts:
        if isinstance(part, ToolCallPart):
            size = arguments_size(part.args)
            limit = MAX_MODEL_ANSWER_BYTES if part.tool_name in output_tools else MAX_TOOL_ARGUMENT_BYTES
            if size > limit:
                part = dataclasses.replace(cast(Any, part), args={OVERSIZED: refusal(size)})
                changed = True
        elif isinstance(part, TextPart) and len(part.content) > MAX_MODEL_ANSWER_BYTES // 4:
            data = part.content.encode("utf-8", "surrogatepass")
            if len(data) > MAX_MODEL_ANSWER_BYTES:
                cut = data[:MAX_MODEL_ANSWER_BYTES].decode("utf-8", "ignore")
                part = dataclasses.replace(part, content=cut)
                changed = True
        parts.append(part)
    return dataclasses.replace(response, parts=parts) if changed else response


def _content_size(part: ToolReturnPart) -> int:
    content = part.content
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass"))
    return json_size(content)


def _message_size(message: ModelMessage) -> int:
    total = 0
    for part in message.parts:
        if isinstance(part, ToolReturnPart):
            total += _content_size(part)
        elif isinstance(part, ToolCallPart):
            total += arguments_size(part.args)
        else:
            total += len(str(getattr(part, "content", "") or "").encode("utf-8", "surrogatepass"))
    return total


def fit_history(messages: list[ModelMessage], limit: int = MAX_MODEL_REQUEST_BYTES) -> list[ModelMessage]:
    """The conversation, its oldest tool results cut (with a marker) until it fits ``limit``.

    Messages already within the limit are returned as they are (the same objects: a replay of a
    run recorded before this bound takes the same path). Oversized tool-call arguments are never
    there (``bound_response``), so tool results are what grows; the prompt is bounded by the event.
    """
    total = sum(_message_size(m) for m in messages)
    if total <= limit:
        return messages
    out = list(messages)
    for index, message in enumerate(out[:-1]):  # the newest request is the one being answered
        if total <= limit or not isinstance(message, ModelRequest):
            continue
        parts = list(message.parts)
        for position, part in enumerate(parts):
            if total <= limit or not isinstance(part, ToolReturnPart):
                continue
            size = _content_size(part)
            keep = min(size, 512)
            text = part.content if isinstance(part.content, str) else str(part.content)
            cut = text.encode("utf-8", "surrogatepass")[:keep].decode("utf-8", "ignore")
            parts[position] = dataclasses.replace(
                cast(Any, part), content=cut + CUT_MARKER.format(size=size, limit=limit)
            )
            total -= size - keep
        out[index] = dataclasses.replace(message, parts=parts)
    return out


async def _fit(ctx: RunContext[DiagnosisDeps], messages: list[ModelMessage]) -> list[ModelMessage]:
    return fit_history(messages)


class BoundedToolCalls(AbstractCapability[DiagnosisDeps]):
    """Refuses a tool call whose arguments are over the bound (workflow code, before the call is
    validated or scheduled): the model sees ``refused: ...`` as the call's failed result, the
    history keeps only the short reason, and the call never runs."""

    async def before_tool_validate(
        self,
        ctx: RunContext[DiagnosisDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
    ) -> Any:
        if tool_def.kind == "output":  # the answer itself: bounded as an answer (bound_response)
            return args
        reason = oversized(call.args) or (oversized(args) if isinstance(args, (str, dict)) else None)
        if reason is None:
            return args
        call.args = {OVERSIZED: reason}
        raise ToolFailed(reason)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None


def history_fitter() -> Any:
    """The capability that keeps every model request under ``MAX_MODEL_REQUEST_BYTES``."""
    from pydantic_ai.capabilities.process_history import ProcessHistory

    return ProcessHistory(_fit)
