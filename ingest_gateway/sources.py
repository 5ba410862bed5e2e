"""Event sources in memory, fed from the config topic, and the check every request passes."""

from __future__ import annotations

import base64
import binascii
import hmac

from ingest_gateway.errors import SourceForbidden, UnknownSource
from schemas.config import EventSource, hash_write_key
from trackflow.config_topic import SourceRegistry

__all__ = ["SourceRegistry", "check_source", "source_for_write_key", "write_key_of"]


def check_source(
    registry: SourceRegistry, source_id: str, origin: str | None, write_key: str | None = None
) -> EventSource:
    source = registry.get(source_id)
    if source is None:
        raise UnknownSource(f"source.id {source_id!r} is not a registered event source")
    if source.write_key_sha256 is not None and not _key_matches(source, write_key):
        raise UnknownSource(
            f"source {source_id!r} needs its write key (HTTP Basic user, or X-Write-Key header)"
            if write_key is None
            else f"the write key does not match source {source_id!r}"
        )
    if not source.enabled:
        raise SourceForbidden(f"source {source_id!r} is disabled")
    if not source.allows_origin(origin):
        raise SourceForbidden(
            f"origin {origin!r} is not allowed for source {source_id!r}"
            f" (allowed: {', '.join(source.allowed_origins)})"
        )
    return source


def write_key_of(authorization: str | None, header: str | None) -> str | None:
    """The write key from ``X-Write-Key`` or HTTP Basic (the key as user name, Segment-style)."""
    if header:
        return header
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


def _key_matches(source: EventSource, write_key: str | None) -> bool:
    """Constant-time comparison of digests, so timing says nothing about the key."""
    assert source.write_key_sha256 is not None
    given = hash_write_key(write_key or "")
    return hmac.compare_digest(given, source.write_key_sha256) and write_key is not None


def source_for_write_key(registry: SourceRegistry, write_key: str) -> EventSource | None:
    """The source whose write key this is; for a source registered without a write key, its
    id serves as one (so ``--id my-site`` works as a Segment write key)."""
    digest = hash_write_key(write_key)
    by_id = None
    for source in registry.all():
        if source.write_key_sha256 is not None and hmac.compare_digest(
            source.write_key_sha256, digest
        ):
            return source
        if source.id == write_key and source.write_key_sha256 is None:
            by_id = source
    return by_id
