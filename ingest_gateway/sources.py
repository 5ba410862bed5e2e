"""Event sources in memory, fed from the config topic, and the check every request passes."""

from __future__ import annotations

from ingest_gateway.errors import SourceForbidden, UnknownSource
from schemas.config import EventSource
from trackflow.config_topic import SourceRegistry

__all__ = ["SourceRegistry", "check_source"]


def check_source(registry: SourceRegistry, source_id: str, origin: str | None) -> EventSource:
    source = registry.get(source_id)
    if source is None:
        raise UnknownSource(f"source.id {source_id!r} is not a registered event source")
    if not source.enabled:
        raise SourceForbidden(f"source {source_id!r} is disabled")
    if not source.allows_origin(origin):
        raise SourceForbidden(
            f"origin {origin!r} is not allowed for source {source_id!r}"
            f" (allowed: {', '.join(source.allowed_origins)})"
        )
    return source
