"""Records on the compacted config topic: event sources and workflow rules.

Key: ``source:<id>``; value: a :class:`ConfigRecord` (``kind: "source"``) as JSON; key
``rule:<id>``: a :class:`schemas.rules.RuleRecord` (``kind: "rule"``). Readers parse either
with :func:`parse_config_record`. A source or rule is never deleted, only disabled, so the
audit trail stays in the topic until compaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.enrichment import EnrichOptions
from schemas.rules import RuleRecord, rule_key

__all__ = [
    "CONFIG_VERSION",
    "AnyConfigRecord",
    "ConfigMessage",
    "ConfigRecord",
    "EventSource",
    "config_key",
    "hash_write_key",
    "parse_config_record",
    "source_key",
]

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


AnyConfigRecord = Annotated[ConfigRecord | RuleRecord, Field(discriminator="kind")]


class ConfigMessage(RootModel[AnyConfigRecord]):
    """Any value on the config topic: a source (``kind: "source"``) or a rule (``"rule"``)."""


def parse_config_record(value: bytes | str) -> ConfigRecord | RuleRecord:
    """The record a config-topic value holds; ``ValidationError`` naming the field."""
    return ConfigMessage.model_validate_json(value).root


def config_key(record: ConfigRecord | RuleRecord) -> bytes:
    """The compaction key: ``source:<id>`` or ``rule:<id>``."""
    if isinstance(record, RuleRecord):
        return rule_key(record.rule.id)
    return source_key(record.source.id)
