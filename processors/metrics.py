"""The workers' Prometheus metrics, on a registry the composition root passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.stage_events = Counter(
            "trackflow_stage_events_total",
            "Events processed, by stage and outcome",
            ["stage", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "trackflow_stage_duration_seconds",
            "Time to process one batch, by stage",
            ["stage"],
            buckets=_FAST,
            registry=r,
        )
        self.failed_events = Counter(
            "trackflow_failed_events_total",
            "Events sent to failed events, by stage and reason",
            ["stage", "reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "trackflow_consumer_lag",
            "Messages not yet processed, by topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "trackflow_end_to_end_latency_seconds",
            "From gateway receipt to stored row",
            buckets=_LATENCY,
            registry=r,
        )
        self.store_batch_size = Histogram(
            "trackflow_store_batch_size",
            "Events per store batch",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.store_write_seconds = Histogram(
            "trackflow_store_write_duration_seconds",
            "PostgreSQL write time per batch",
            buckets=_FAST,
            registry=r,
        )
        self.ready = Gauge("trackflow_worker_ready", "1 when the worker is ready", registry=r)
        self.rule_matches = Counter(
            "trackflow_rule_matches_total",
            "Events a workflow rule matched, by rule id",
            ["rule"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "trackflow_webhook_deliveries_total",
            "Webhook attempts by outcome (delivered, retry, dead_letter) and attempt number",
            ["outcome", "attempt"],
            registry=r,
        )
        self.merges = Counter(
            "trackflow_merges_total", "Profiles merged into another profile", registry=r
        )
        self.identity_conflicts = Counter(
            "trackflow_identity_conflicts_total",
            "Merges refused by a guardrail (and blocked identifier values), by reason",
            ["reason"],
            registry=r,
        )
