"""The project's data converter: the one every client, worker and test of the project uses.

``DATA_CONVERTER`` (no codec) and ``codec_data_converter(codec)`` are the SDK's pydantic data
converter with the project's failure converter (``aiops.codec.failures``: a refusal travels as
its reason, without a stack trace; a bug keeps its stack trace).

With a codec, failures are encoded too (``AiopsEncodedFailureConverter``, the same rule on top of
the SDK's ``DefaultFailureConverterWithEncodedAttributes``): a failure's message and stack trace
are not payloads, so without this option they would reach the server in clear, and an exception's
message often quotes the data it failed on. The server then shows "Encoded failure" in their
place; a client with the codec reads them back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from aiops.codec.failures import AiopsEncodedFailureConverter, AiopsFailureConverter
from aiops.codec.settings import codec_from_env

# The project's data converter in clear text (tests, replay, anything without AIOPS_CODEC_KEYS).
DATA_CONVERTER = dataclasses.replace(pydantic_data_converter, failure_converter_class=AiopsFailureConverter)


def codec_data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The project's data converter, sealed with ``codec`` when given (and failures encoded)."""
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(
        DATA_CONVERTER, payload_codec=codec, failure_converter_class=AiopsEncodedFailureConverter
    )


def data_converter_from_env(environ: Mapping[str, str] | None = None) -> DataConverter:
    """``codec_data_converter`` per ``AIOPS_CODEC_KEYS``/``AIOPS_CODEC_CURRENT``; raises
    ``CodecConfigError`` when they are set but unusable."""
    return codec_data_converter(codec_from_env(environ))
