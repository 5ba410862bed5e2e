"""Records on the compacted config topic: event sources (and, later, rules).

Key: ``source:<id>``; value: a :class:`ConfigRecord` as JSON. A source is never deleted,
only disabled, so the audit trail stays in the topic until compaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.enrichment import EnrichOptions

__all__ = ["CONFIG_VERSION", "ConfigRecord", "EventSource", "hash_write_key", "source_key"]

CONFIG_VERSION = 1


class EventSource(BaseModel):
    """Where events come from: a site, an app, a backend service."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ("*",)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    # SHA-256 (hex) of the source's write key; the key itself is never stored or published
    write_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    enrich: EnrichOptions = Field(default_factory=EnrichOptions)
    updated_at: datetime

    def allows_origin(self, origin: str | None) -> bool:
        """A request without an Origin header (server side) is always allowed."""
        return origin is None or "*" in self.allowed_origins or origin in self.allowed_origins


class ConfigRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    kind: Literal["source"]
    source: EventSource


def hash_write_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def source_key(source_id: str) -> bytes:
    return f"source:{source_id}".encode()
