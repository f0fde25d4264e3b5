"""Errors an agent author raises to tell the framework what retrying can fix."""

from __future__ import annotations


class AgentError(Exception):
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
