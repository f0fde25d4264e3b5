"""What to tell a person about a failed activity or child: the innermost application error."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


def cause_message(err: BaseException) -> str:
    """The message of the first ``ApplicationError`` in ``err``'s cause chain (else the last cause)."""
    cause: BaseException = err
    while cause.__cause__ is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return str(cause)
