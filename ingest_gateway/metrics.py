"""The gateway's Prometheus metrics and the ASGI middleware that measures every request.

With several uvicorn worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``trackflow
gateway --workers N`` does): each process writes its samples there and ``/metrics``
aggregates them, so counts are right whichever process answers the scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "MetricsMiddleware"]

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BYTES = (128, 512, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "trackflow_gateway_requests_total",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.events_accepted = Counter(
            "trackflow_gateway_events_accepted_total",
            "Events acknowledged by Kafka, by source",
            ["source"],
            registry=r,
        )
        self.events_rejected = Counter(
            "trackflow_gateway_events_rejected_total",
            "Requests rejected, by source and reason",
            ["source", "reason"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "trackflow_gateway_request_duration_seconds",
            "HTTP request duration by endpoint",
            ["endpoint"],
            buckets=_SECONDS,
            registry=r,
        )
        self.produce_seconds = Histogram(
            "trackflow_gateway_produce_duration_seconds",
            "Time for Kafka to acknowledge a request's events",
            buckets=_SECONDS,
            registry=r,
        )
        self.in_flight = Gauge(
            "trackflow_gateway_requests_in_flight",
            "Requests being handled",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.request_bytes = Histogram(
            "trackflow_gateway_request_size_bytes",
            "Request body size (Content-Length)",
            buckets=_BYTES,
            registry=r,
        )
        self.kafka_ready = Gauge(
            "trackflow_gateway_kafka_ready",
            "1 when the last Kafka check or write succeeded",
            registry=r,
            multiprocess_mode="min",
        )

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        status = 500
        length = _content_length(scope)
        if length is not None:
            m.request_bytes.observe(length)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        m.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m.in_flight.dec()
            endpoint = _endpoint(scope)
            m.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
            m.requests.labels(endpoint, str(status)).inc()


def _endpoint(scope: Scope) -> str:
    route: Any = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
