"""Wiring the enrich stage: the process-wide context from settings, and per-source options.

The context (GeoIP readers, the user-agent parser and its cache) is built once per process;
each source's options derive a cheap per-source context, cached until the source changes.
"""

from __future__ import annotations

from datetime import datetime

from processors.enrich import EnrichContext, GeoIP2Lookup, default_city_database, enrich
from schemas import RawEvent
from schemas.enrichment import EnrichedEvent, EnrichOptions
from trackflow.config_topic import SourceRegistry
from trackflow.settings import Settings

__all__ = ["SourceEnricher", "enrich_context"]


def enrich_context(settings: Settings) -> EnrichContext:
    city = settings.geoip_city_db or default_city_database()
    geo = (
        GeoIP2Lookup(city, settings.geoip_asn_db, settings.geoip_anonymous_db)
        if city is not None
        else None
    )
    return EnrichContext(geo=geo, hash_salt=settings.hash_salt.get_secret_value().encode())


class SourceEnricher:
    """``enrich()`` with the options of the event's source (defaults for unknown sources)."""

    def __init__(self, base: EnrichContext, sources: SourceRegistry) -> None:
        self._base = base
        self._sources = sources
        self._contexts: dict[str, tuple[datetime | None, EnrichContext]] = {}

    def __call__(self, event: RawEvent) -> EnrichedEvent:
        return enrich(event, self._context(event.source_id))

    def _context(self, source_id: str) -> EnrichContext:
        source = self._sources.get(source_id)
        version = source.updated_at if source else None
        cached = self._contexts.get(source_id)
        if cached is None or cached[0] != version:
            options = source.enrich if source else EnrichOptions()
            cached = self._contexts[source_id] = (version, self._base.for_source(options))
        return cached[1]
