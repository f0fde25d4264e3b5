"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` environment variables.

The SDK's ``TracingInterceptor`` on the client (and so on every worker built
from it) carries the trace through Temporal headers: one trace links the
client's signal or start, the workflow, and the activities it runs.

Exporter choice: ``OTEL_TRACES_EXPORTER`` = ``otlp`` | ``console`` | ``none``.
When it is unset, traces go over OTLP only if an OTLP endpoint is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
otherwise nowhere, so a worker without a collector does not log export
errors. ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``) picks
``http/protobuf`` (default) or ``grpc``; the endpoint, headers and timeouts are
read by the exporters themselves. ``OTEL_SERVICE_NAME`` names the service.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

log = logging.getLogger("aiops.tracing")

_provider: TracerProvider | None = None


def exporter_from_env() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        has_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        choice = "otlp" if has_endpoint else "none"
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r} is not supported; use otlp, console or none")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ValueError(f"OTLP protocol {protocol!r} is not supported; use http/protobuf or grpc")


def setup_tracing(default_service_name: str = "aiops") -> TracerProvider | None:
    """Install the process's tracer provider from the environment (once); None if tracing is off."""
    global _provider
    if _provider is not None:
        return _provider
    exporter = exporter_from_env()
    if exporter is None:
        return None
    service = os.environ.get("OTEL_SERVICE_NAME", default_service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing to %s as service %s", type(exporter).__name__, service)
    return provider


def tracing_interceptors(default_service_name: str = "aiops") -> list[TracingInterceptor]:
    """The client interceptors to pass to ``Client.connect`` (empty when tracing is off)."""
    return [TracingInterceptor()] if setup_tracing(default_service_name) is not None else []


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
