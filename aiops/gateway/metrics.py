"""The gateway's Prometheus metrics, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# outcome of each event: accepted (Temporal took the signal), duplicate (accepted, and this gateway
# had delivered the same event id to that agent before: the agent drops it), unrouted (no route took
# it), rejected (refused before delivery: bad schema or too large), failed (delivery failed: 503),
# truncated (left out of the notification by Alertmanager's webhook max_alerts: never received)
OUTCOMES = ("accepted", "duplicate", "unrouted", "rejected", "failed", "truncated")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aiops_gateway_requests",
            "HTTP requests by endpoint, source and status code",
            ["endpoint", "source", "code"],
            registry=self.registry,
        )
        self.events = Counter(
            "aiops_gateway_events",
            "Events by source and outcome (accepted, duplicate, unrouted, rejected, failed, truncated)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.delivery = Histogram(
            "aiops_gateway_delivery_seconds",
            "From a request's arrival to Temporal accepting all its events",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.config_version = Gauge(
            "aiops_gateway_config_version", "The config version in force", registry=self.registry
        )
        self.config_reloads = Counter(
            "aiops_gateway_config_reloads",
            "Config loads by result (applied, refused)",
            ["result"],
            registry=self.registry,
        )
