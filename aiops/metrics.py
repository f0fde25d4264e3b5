"""One Prometheus scrape target per worker: the Temporal SDK's metrics and the framework's.

Every metric, the SDK's own and ours, is recorded through Temporal's metric
meter (``workflow.metric_meter()`` skips replays, so workflow metrics count
each step once). The runtime buffers the updates; ``MetricsBridge`` drains the
buffer into its own collector, which ``/metrics`` exposes in the Prometheus
text format. Names follow Prometheus conventions: counters end in ``_total``,
durations are in seconds (``_seconds``).

Fleet gauges (``FLEET_GAUGES``: pending approvals, the oldest one's age, agent
health) describe the whole task queue, not this worker: the health monitor's
``record_health`` activity sets them on whichever worker runs it. So that they
are exported once, a worker drops its fleet readings ``fleet_gauge_ttl`` after
it wrote them (one and a half monitor intervals): when the next pass ran on
another worker, this one stops exporting the older values soon after, and only
the worker that ran the latest pass exports them. Around a hand-over two
workers may briefly both export them (from two consecutive passes), so
dashboards and alert rules aggregate them with ``max by (...)``, never ``sum``.
Other ``aiops_*`` gauges expire after ``gauge_ttl`` without an update.

The SDK runtime's ``service_name="temporal-core-sdk"`` label is not attached.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Approvals wait minutes to hours.
WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
LONG_METRICS = re.compile(r"approval_wait|action_duration")
# Gauges that describe the fleet (set by the health monitor's pass on one worker): see the docstring.
FLEET_GAUGES = frozenset(
    {"aiops_pending_approvals", "aiops_oldest_pending_approval_seconds", "aiops_agent_health"}
)

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(name: str, unit: str, is_counter: bool) -> str:
    base = _INVALID.sub("_", name)
    if unit in ("duration", "s", "seconds") and not base.endswith("_seconds"):
        base += "_seconds"
    if is_counter:
        base = base.removesuffix("_total")
    return base


Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


@dataclass
class _Family:
    kind: str  # counter | gauge | histogram
    doc: str
    values: dict[Labels, float] = field(default_factory=dict)
    updated: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, _Histogram] = field(default_factory=dict)


class MetricsBridge(Collector):
    """Drains a runtime's metric buffer into Prometheus families."""

    def __init__(
        self, buffer: MetricBuffer, gauge_ttl: float = 300.0, fleet_gauge_ttl: float | None = None
    ) -> None:
        self.buffer = buffer
        self.gauge_ttl = gauge_ttl
        self.fleet_gauge_ttl = gauge_ttl if fleet_gauge_ttl is None else fleet_gauge_ttl
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def drain(self) -> None:
        updates = self.buffer.retrieve_updates()
        now = time.monotonic()
        with self._lock:
            for update in updates:
                metric = update.metric
                is_counter = metric.kind == BUFFERED_METRIC_KIND_COUNTER
                name = prometheus_name(metric.name, metric.unit or "", is_counter)
                labels: Labels = tuple(sorted((str(k), str(v)) for k, v in update.attributes.items()))
                if is_counter:
                    family = self._family(name, "counter", metric.description)
                    family.values[labels] = family.values.get(labels, 0.0) + float(update.value)
                elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family = self._family(name, "gauge", metric.description)
                    family.values[labels] = float(update.value)
                    family.updated[labels] = now
                else:
                    family = self._family(name, "histogram", metric.description)
                    buckets = WAIT_BUCKETS if LONG_METRICS.search(name) else LATENCY_BUCKETS
                    histogram = family.histograms.setdefault(labels, _Histogram(buckets))
                    histogram.observe(float(update.value))

    def _family(self, name: str, kind: str, doc: str | None) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind=kind, doc=doc or name)
        return family

    def collect(self) -> Iterator[Metric]:
        self.drain()
        now = time.monotonic()
        with self._lock:
            for name, family in sorted(self._families.items()):
                metric = Metric(name, family.doc, family.kind)
                if family.kind == "counter":
                    for labels, value in family.values.items():
                        metric.samples.append(Sample(f"{name}_total", dict(labels), value))
                elif family.kind == "gauge":
                    expires = name.startswith("aiops_")  # the SDK updates its gauges only on change
                    ttl = self.fleet_gauge_ttl if name in FLEET_GAUGES else self.gauge_ttl
                    for labels, value in list(family.values.items()):
                        if expires and now - family.updated.get(labels, now) > ttl:
                            del family.values[labels]
                            continue
                        metric.samples.append(Sample(name, dict(labels), value))
                else:
                    for labels, h in family.histograms.items():
                        cumulative = 0
                        for bound, n in zip((*h.buckets, float("inf")), h.counts, strict=True):
                            cumulative += n
                            le = "+Inf" if bound == float("inf") else _bound(bound)
                            bucket = {**dict(labels), "le": le}
                            metric.samples.append(Sample(f"{name}_bucket", bucket, cumulative))
                        metric.samples.append(Sample(f"{name}_sum", dict(labels), h.total))
                        metric.samples.append(Sample(f"{name}_count", dict(labels), h.count))
                yield metric


def _bound(value: float) -> str:
    return str(float(value))


@dataclass
class Telemetry:
    """The runtime every client and worker of this process uses, and its metrics registry."""

    runtime: Runtime
    registry: CollectorRegistry
    bridge: MetricsBridge


def fleet_gauge_ttl(health_every: float) -> float:
    """How long a worker exports the fleet gauges of a pass it ran: past the next pass, not much more."""
    return 1.5 * (health_every if health_every > 0 else 60.0) + 10.0


def create_telemetry(
    gauge_ttl: float = 300.0,
    global_tags: Mapping[str, str] | None = None,
    fleet_gauge_ttl: float | None = None,
) -> Telemetry:
    """A runtime whose metrics this process exports (``fleet_gauge_ttl``: see the module docstring)."""
    buffer = MetricBuffer(100_000, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=buffer,
            global_tags=dict(global_tags or {}),
            attach_service_name=False,  # not service_name="temporal-core-sdk" on every series
        )
    )
    bridge = MetricsBridge(buffer, gauge_ttl, fleet_gauge_ttl)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(bridge)
    return Telemetry(runtime=runtime, registry=registry, bridge=bridge)


def series(text: str, name: str) -> Iterable[tuple[dict[str, str], float]]:
    """Parse the samples of ``name`` out of a scrape (for tests and the demo)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value
