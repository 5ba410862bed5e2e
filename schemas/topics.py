"""Kafka topic names: the wire contract between the gateway and the stages.

Topics are prefixed ``trackflow.`` and versioned where the payload is. Event topics are
keyed by profile id so that one profile's events are processed in order by one consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALL_TOPICS",
    "CONFIG",
    "EVENTS_ENRICHED",
    "EVENTS_FAILED",
    "EVENTS_IDENTIFIED",
    "EVENTS_RAW",
    "IDENTITY_CLAIMS",
    "WEBHOOKS",
    "WEBHOOKS_DEAD",
    "WEBHOOKS_RETRY",
    "TopicSpec",
]

EVENTS_RAW = "trackflow.events.raw.v1"
EVENTS_ENRICHED = "trackflow.events.enriched.v1"
EVENTS_FAILED = "trackflow.events.failed.v1"
CONFIG = "trackflow.config.v1"
# Events with their canonical profile and session ids (identify -> enrich); identity claims
# keyed by identifier, so one merge writer decides per identifier (identify -> merge).
EVENTS_IDENTIFIED = "trackflow.events.identified.v1"
IDENTITY_CLAIMS = "trackflow.identity.claims.v1"
# Webhook calls planned by the workflow stage; failed attempts wait on the retry topic until
# their due time; calls that exhausted their attempts land on the dead-letter topic.
WEBHOOKS = "trackflow.webhooks.v1"
WEBHOOKS_RETRY = "trackflow.webhooks.retry.v1"
WEBHOOKS_DEAD = "trackflow.webhooks.dead.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    single_partition: bool = False


ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS_RAW),
    TopicSpec(EVENTS_ENRICHED),
    TopicSpec(EVENTS_FAILED),
    TopicSpec(EVENTS_IDENTIFIED),
    TopicSpec(IDENTITY_CLAIMS),
    TopicSpec(CONFIG, compacted=True, single_partition=True),
    TopicSpec(WEBHOOKS),
    TopicSpec(WEBHOOKS_RETRY),
    TopicSpec(WEBHOOKS_DEAD),
)
