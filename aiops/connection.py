"""One way to reach Temporal for the worker, the clients and the tests.

Settings come from the SDK's environment configuration, the same sources the
``temporal`` CLI reads: ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, the ``TEMPORAL_TLS_*`` variables and the profiles in
``temporal.toml`` (``TEMPORAL_PROFILE`` picks one). Everything crossing the
wire uses the project's data converter (``aiops.codec.DATA_CONVERTER``: the SDK's
pydantic one, with refusals sent without a stack trace), sealed with AES-256-GCM when
``AIOPS_CODEC_KEYS`` is set (``aiops.codec``; docs/encryption.md): every
client and worker of the project connects here, so none writes in clear
text while another encrypts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from aiops.codec import data_converter_from_env
from aiops.dropped_calls import RepeatDroppedCalls
from aiops.tracing import tracing_interceptors

DEFAULT_ADDRESS = "localhost:7233"


def connect_settings(address: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """The keyword arguments for ``Client.connect``, explicit values winning over the environment."""
    settings: dict[str, Any] = dict(
        ClientConfig.load_client_connect_config(profile=os.environ.get("TEMPORAL_PROFILE"))
    )
    if address:
        settings["target_host"] = address
    if namespace:
        settings["namespace"] = namespace
    settings.setdefault("target_host", DEFAULT_ADDRESS)
    settings.setdefault("namespace", "default")
    return settings


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    interceptors: Sequence[Interceptor] | None = None,
    identity: str | None = None,
    runtime: Runtime | None = None,
    service_name: str = "aiops-client",
    data_converter: DataConverter | None = None,
) -> Client:
    """A client; with no ``interceptors`` given, tracing per the ``OTEL_*`` environment; with no
    ``data_converter``, the project's, with the codec ``AIOPS_CODEC_KEYS`` configures (a
    ``CodecConfigError`` when that is set but unusable, before anything connects). Calls the
    connection drops are made again where that is safe (``aiops.dropped_calls``), whatever
    interceptors are given."""
    if data_converter is None:
        data_converter = data_converter_from_env()
    settings = connect_settings(address, namespace)
    if identity:
        settings["identity"] = identity
    if interceptors is None:
        interceptors = tracing_interceptors(service_name)
    return await Client.connect(
        **settings,
        data_converter=data_converter,
        interceptors=[RepeatDroppedCalls(), *interceptors],
        runtime=runtime,
    )
