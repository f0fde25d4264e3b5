"""The failure converter: a refusal travels as its reason, a bug as its stack trace.

A refused ``decide`` update (a bad token, an unknown approver...) is the framework working as
designed, and the person who sent it reads the failure in the Web UI: the SDK's default converter
attaches the Python stack trace of the workflow code that refused, so the dialog showed the reason
and then the worker's file paths. Here a failure the project raises on purpose keeps its message,
type, details and non-retryable flag, and sends no stack trace:

- an ``ApplicationError`` whose type is one of the refusal types the contracts declare
  (``REFUSAL_TYPES``), or the name of an ``AiopsError`` subclass (activities raise those as
  ``ApplicationError(type=type(err).__name__)``);
- an ``AiopsError`` raised as is (the SDK names its failure after the class).

Anything else is a bug, or a failure the project did not foresee: its stack trace stays in the
failure (and the SDK logs it in the worker's log), where the person fixing it needs it.

Both converters of the project use this rule: the clear one, and the one that moves message and
stack trace into the encrypted attributes when the payload codec is on (``aiops.codec``).
"""

from __future__ import annotations

from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError, FailureError

from aiops.contracts.action import APPROVAL_REFUSED
from aiops.contracts.agent import COMMAND_REFUSED, CONFIG_REFUSED, INTAKE_REFUSED, INVALID_AGENT_INPUT
from aiops.contracts.errors import AiopsError

# Failure types the workflows raise to refuse a request; the message says why, nothing else helps.
REFUSAL_TYPES = frozenset(
    {APPROVAL_REFUSED, COMMAND_REFUSED, CONFIG_REFUSED, INTAKE_REFUSED, INVALID_AGENT_INPUT}
)


def _aiops_error_names() -> set[str]:
    """The names of every ``AiopsError`` subclass imported so far (a raised one always is)."""
    names, todo = set(), [AiopsError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def is_refusal(error: BaseException) -> bool:
    """True when ``error`` is the project refusing on purpose, not a bug (see the module doc)."""
    if isinstance(error, AiopsError):
        return True
    if isinstance(error, ApplicationError) and error.type:
        return error.type in REFUSAL_TYPES or error.type in _aiops_error_names()
    return False


class AiopsFailureConverter(DefaultFailureConverter):
    """The SDK's converter, without the stack trace of a refusal (in clear)."""

    def __init__(self, *, encode_common_attributes: bool = False) -> None:
        super().__init__(encode_common_attributes=encode_common_attributes)

    def _error_to_failure(
        self, error: FailureError, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        super()._error_to_failure(error, payload_converter, failure)
        # An error that came back from the server (error.failure) keeps what its sender sent.
        if error.failure is None and is_refusal(error):
            failure.stack_trace = ""


class AiopsEncodedFailureConverter(AiopsFailureConverter):
    """The same rule, with message and stack trace moved into the encrypted attributes."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
