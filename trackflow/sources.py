"""``trackflow sources ...``: event sources as records on the config topic."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.config import ConfigRecord, EventSource, hash_write_key
from schemas.enrichment import EnrichOptions
from trackflow.config_topic import publish_config, read_config

__all__ = ["SourceCommandError", "add_source", "list_sources", "set_source_enabled"]


class SourceCommandError(Exception):
    pass


async def list_sources(bootstrap: str) -> list[EventSource]:
    return sorted((r.source for r in await read_config(bootstrap)), key=lambda s: s.id)


async def add_source(
    bootstrap: str,
    source_id: str,
    name: str,
    origins: tuple[str, ...],
    rate_limit: float | None = None,
    enrich: EnrichOptions | None = None,
    write_key: str | None = None,
) -> EventSource:
    if any(s.id == source_id for s in await list_sources(bootstrap)):
        raise SourceCommandError(
            f"source {source_id!r} already exists; use `trackflow sources enable|disable`"
        )
    source = EventSource(
        id=source_id,
        name=name,
        allowed_origins=origins or ("*",),
        rate_limit_per_second=rate_limit,
        enrich=enrich or EnrichOptions(),
        write_key_sha256=hash_write_key(write_key) if write_key else None,
        updated_at=datetime.now(UTC),
    )
    await publish_config(bootstrap, ConfigRecord(kind="source", source=source))
    return source


async def set_source_enabled(bootstrap: str, source_id: str, enabled: bool) -> EventSource:
    current = {s.id: s for s in await list_sources(bootstrap)}
    if source_id not in current:
        known = ", ".join(current) or "none"
        raise SourceCommandError(f"no source with id {source_id!r} (known: {known})")
    source = current[source_id].model_copy(
        update={"enabled": enabled, "updated_at": datetime.now(UTC)}
    )
    await publish_config(bootstrap, ConfigRecord(kind="source", source=source))
    return source
