"""The project's failure converter: a refusal travels as its reason, a bug as its stack trace.

Exceptions are raised for real (so they carry tracebacks with this file's path) and converted by
the project's data converter, in clear and with the encrypting codec, then read back as a client
reads them.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from aiops.codec import DATA_CONVERTER, EncryptionCodec, codec_data_converter
from aiops.contracts.action import APPROVAL_REFUSED
from aiops.contracts.errors import NonRetryableActionError

KEY = base64.b64decode("WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=")
SEALED = codec_data_converter(EncryptionCodec({"a": KEY}, "a"))


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # the traceback is what the converter would send
        return caught


def _refusal() -> BaseException:
    return _raised(ApplicationError("unknown approver 'mallory'", type=APPROVAL_REFUSED, non_retryable=True))


def _failure(converter: DataConverter, error: BaseException) -> Failure:
    failure = Failure()
    converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    return failure


def _read_back(converter: DataConverter, failure: Failure) -> BaseException:
    async def decode() -> BaseException:
        await converter.decode_failure(failure)
        return converter.failure_converter.from_failure(failure, converter.payload_converter)

    return asyncio.run(decode())


@pytest.mark.parametrize(
    "error",
    [
        _refusal(),
        # An activity re-raises the project's own errors as ApplicationError named after the class.
        _raised(ApplicationError("no such host", type=NonRetryableActionError.__name__, non_retryable=True)),
        _raised(NonRetryableActionError("no such host")),  # raised as is
    ],
    ids=["refusal-type", "aiops-error-name", "aiops-error"],
)
def test_a_refusal_keeps_its_message_and_type_and_sends_no_stack_trace(error: BaseException) -> None:
    assert error.__traceback__ is not None  # there is a stack to leave out
    failure = _failure(DATA_CONVERTER, error)
    assert failure.stack_trace == ""
    assert failure.message == str(error.message if isinstance(error, ApplicationError) else error)
    assert failure.application_failure_info.type in (APPROVAL_REFUSED, "NonRetryableActionError")
    # The flag is the raiser's (the SDK leaves an exception raised as is retryable).
    assert failure.application_failure_info.non_retryable == getattr(error, "non_retryable", False)
    read = _read_back(DATA_CONVERTER, failure)
    assert isinstance(read, ApplicationError) and read.message == failure.message


def test_a_bug_keeps_its_stack_trace() -> None:
    failure = _failure(DATA_CONVERTER, _raised(KeyError("plan")))
    assert failure.application_failure_info.type == "KeyError"
    assert __file__ in failure.stack_trace and "_raised" in failure.stack_trace


def test_a_refusal_caused_by_a_bug_keeps_the_bug_s_stack_trace() -> None:
    try:
        try:
            raise ValueError("bad digest")
        except ValueError as bug:
            raise ApplicationError("refused", type=APPROVAL_REFUSED) from bug
    except ApplicationError as refusal:
        failure = _failure(DATA_CONVERTER, refusal)
    assert failure.stack_trace == ""
    assert failure.cause.application_failure_info.type == "ValueError"
    assert __file__ in failure.cause.stack_trace


def test_the_encrypting_converter_applies_the_same_rule() -> None:
    refusal = _failure(SEALED, _refusal())
    bug = _failure(SEALED, _raised(RuntimeError("boom")))
    for failure in (refusal, bug):  # message and stack trace travel encrypted
        assert failure.message == "Encoded failure" and failure.stack_trace == ""
    read_refusal = _read_back(SEALED, refusal)
    assert isinstance(read_refusal, ApplicationError)
    assert read_refusal.message == "unknown approver 'mallory'" and read_refusal.failure is not None
    assert read_refusal.failure.stack_trace == ""
    read_bug = _read_back(SEALED, bug)
    assert read_bug.failure is not None and __file__ in read_bug.failure.stack_trace  # type: ignore[attr-defined]
