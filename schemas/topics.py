"""Kafka topic names: the wire contract between the gateway and the stages.

Topics are prefixed ``trackflow.`` and versioned where the payload is. Event topics are
keyed by profile id so that one profile's events are processed in order by one consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALL_TOPICS", "CONFIG", "EVENTS_ENRICHED", "EVENTS_FAILED", "EVENTS_RAW", "TopicSpec"]

EVENTS_RAW = "trackflow.events.raw.v1"
EVENTS_ENRICHED = "trackflow.events.enriched.v1"
EVENTS_FAILED = "trackflow.events.failed.v1"
CONFIG = "trackflow.config.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    single_partition: bool = False


ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS_RAW),
    TopicSpec(EVENTS_ENRICHED),
    TopicSpec(EVENTS_FAILED),
    TopicSpec(CONFIG, compacted=True, single_partition=True),
)
