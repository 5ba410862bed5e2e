"""Event sources in memory, fed from the config topic, and the check every request passes."""

from __future__ import annotations

from ingest_gateway.errors import SourceForbidden, UnknownSource
from schemas.config import ConfigRecord, EventSource

__all__ = ["SourceRegistry", "check_source"]


class SourceRegistry:
    """The latest record for each source id, as read from the config topic."""

    def __init__(self, sources: list[EventSource] | None = None) -> None:
        self._sources = {s.id: s for s in sources or []}

    def apply(self, record: ConfigRecord) -> None:
        if record.kind == "source":
            self.put(record.source)

    def put(self, source: EventSource) -> None:
        current = self._sources.get(source.id)
        if current is None or current.updated_at <= source.updated_at:
            self._sources[source.id] = source

    def get(self, source_id: str) -> EventSource | None:
        return self._sources.get(source_id)

    def all(self) -> list[EventSource]:
        return sorted(self._sources.values(), key=lambda s: s.id)


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
