"""Which model a diagnosis talks to, built from the run's endpoint settings on each side.

A ``Model`` instance cannot cross into an activity, so every request carries the model id string
``"aiops-llm"`` and the agent's ``ResolveModelId`` capability rebuilds the model from the run's
deps (``DiagnosisDeps.endpoint``): in workflow code only to read its profile (no I/O, no secret),
in the model-request activity to send the request (the API key reference resolved right there).
"""

from __future__ import annotations

from typing import Any

# Imported here, on the host, not first inside the workflow sandbox (which passes openai through):
# a lazily imported submodule of openai is missing from a passed-through package there.
from openai import AsyncOpenAI
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, ModelResolutionContext
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings
from temporalio import activity

from agents.llm import runtime
from agents.llm.bounds import bound_response
from agents.llm.contracts import DiagnosisDeps
from agents.llm.settings import EndpointSettings

MODEL_ID = "aiops-llm"
_registered: dict[str, Model] = {}


def register_model(name: str, model: Model) -> None:
    """Make ``model`` available as ``endpoint: {provider: registered, model: name}`` in this process
    (Pydantic AI's ``FunctionModel``/``TestModel`` in tests, the demo's scripted model)."""
    _registered[name] = model


def unregister_model(name: str) -> None:
    _registered.pop(name, None)


class Heartbeating(WrapperModel):
    """A model whose requests heartbeat the model-request activity they run in: a worker killed
    mid-request is noticed within the heartbeat timeout and the request retried elsewhere. Its
    answers are bounded there too (``agents.llm.bounds.bound_response``)."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        async with runtime.heartbeating():
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        output_tools = frozenset(t.name for t in model_request_parameters.output_tools)
        return bound_response(response, output_tools)  # the activity's result: never over its budget


def build_model(endpoint: EndpointSettings) -> Model:
    model = _build_model(endpoint)
    return Heartbeating(model) if activity.in_activity() else model


def _build_model(endpoint: EndpointSettings) -> Model:
    if endpoint.provider == "registered":
        model = _registered.get(endpoint.model)
        if model is not None:
            return model
        if not activity.in_activity():
            # Workflow code only reads the model's name and profile, and a replay (or a worker that
            # never registered it) must take the same path: a stand-in that never answers.
            return _stand_in(endpoint.model)
        raise LookupError(f"no model {endpoint.model!r} is registered in this worker")
    api_key = "not-used-in-workflow-code"
    if activity.in_activity() and endpoint.api_key_ref is not None:
        from agents.secrets import resolve_reference

        api_key = resolve_reference(endpoint.api_key_ref, "settings.endpoint.api_key_ref")
    elif endpoint.api_key_ref is None:
        api_key = "none"  # a local server without authentication
    return openai_model(endpoint, api_key)


def openai_model(endpoint: EndpointSettings, api_key: str) -> Model:
    """The OpenAI-compatible model of ``endpoint`` with this (resolved) key; also the eval's."""
    client = AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=api_key,
        timeout=endpoint.request_timeout_seconds,
        max_retries=0,  # Temporal retries the activity (endpoint.max_attempts)
    )
    return OpenAIChatModel(endpoint.model, provider=OpenAIProvider(openai_client=client))


def _stand_in(name: str) -> Model:
    def never(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise LookupError(f"no model {name!r} is registered in this worker")

    return FunctionModel(never, model_name=name)


def resolve(ctx: ModelResolutionContext[Any], model_id: str) -> Model | None:
    if model_id != MODEL_ID:
        return None
    deps = ctx.deps
    if not isinstance(deps, DiagnosisDeps):
        raise TypeError("an llm diagnosis needs DiagnosisDeps")
    return build_model(deps.endpoint)
