"""The data converter every client and worker of the project uses, with or without the codec.

With a codec, failures are encoded too (``DefaultFailureConverterWithEncodedAttributes``): a
failure's message and stack trace are not payloads, so without this option they would reach the
server in clear, and an exception's message often quotes the data it failed on. The server then
shows "Encoded failure" in their place; a client with the codec reads them back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from aiops.codec.settings import codec_from_env


def codec_data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The pydantic data converter, sealed with ``codec`` when given (and failures encoded)."""
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def data_converter_from_env(environ: Mapping[str, str] | None = None) -> DataConverter:
    """``codec_data_converter`` per ``AIOPS_CODEC_KEYS``/``AIOPS_CODEC_CURRENT``; raises
    ``CodecConfigError`` when they are set but unusable."""
    return codec_data_converter(codec_from_env(environ))
