"""The gateway's Prometheus metrics, on a registry the composition root passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "trackflow_gateway_requests_total",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.events_accepted = Counter(
            "trackflow_gateway_events_accepted_total",
            "Events acknowledged by Kafka, by source",
            ["source"],
            registry=registry,
        )
        self.events_rejected = Counter(
            "trackflow_gateway_events_rejected_total",
            "Requests rejected, by reason",
            ["reason"],
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "trackflow_gateway_produce_duration_seconds",
            "Time for Kafka to acknowledge a request's events",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
