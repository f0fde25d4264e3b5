"""The framework's exception hierarchy: one root, ``AiopsError``, for everything it raises.

Catch ``AiopsError`` to catch any framework error. Under it:

- ``AgentError``: raised by agent code (the SDK an agent author uses) to tell the
  framework what retrying can fix; its non-retryable subclasses travel through
  Temporal as ``ApplicationError`` types named after the class.
- ``SecretUnavailableError``: a secret reference points at nothing on this worker.
- ``aiops.client.ClientError``: a refused or failed operator request.
- ``aiops.cli.output.CliError``: what the CLI reports as one line and an exit code.

It lives in the agent SDK, the lowest layer, so every other package can import it.
"""

from __future__ import annotations

from pydantic import ValidationError


class AiopsError(Exception):
    """Root of every error the framework raises on purpose; the message says what to do."""


class AgentError(AiopsError):
    """Base of every framework error raised by agent code."""


class NonRetryableActionError(AgentError):
    """An action failed in a way retrying cannot fix (bad input, forbidden, gone).

    The execute activity declares this type non-retryable, so Temporal stops at
    the first attempt instead of burning the retry budget.
    """


class AgentLifecycleError(AgentError):
    """A hook was called in a lifecycle state that does not allow it."""


class UnknownAgentTypeError(AgentError):
    """No agent class is registered under the requested type name."""


class InvalidAgentConfigError(AgentError):
    """The agent type's own validation refused a configuration."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SecretUnavailableError(AiopsError):
    """A secret reference points at nothing on this worker (unset variable, unreadable file)."""


def describe_validation_error(err: ValidationError) -> str:
    """Every problem as ``field.path: message`` joined by ``;``; input values are never echoed."""
    parts = []
    for problem in err.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "event"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)
