"""Messages on the event topics, each with an envelope version ``v``.

``RawEvent`` is what the gateway publishes to ``trackflow.events.raw.v1`` and what backend
services may produce there directly (JSON Schema: ``trackflow schemas export``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["RAW_EVENT_VERSION", "FailedEvent", "RawEvent", "RequestInfo"]

RAW_EVENT_VERSION = 1
JsonObject = dict[str, Any]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestInfo(_Message):
    """What the gateway saw of the HTTP request; empty for direct producers."""

    ip: str | None = None
    user_agent: str | None = None
    origin: str | None = None
    referer: str | None = None
    accept_language: str | None = None


class RawEvent(_Message):
    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=128)
    source_id: str = Field(min_length=1, max_length=128)
    profile_id: str = Field(min_length=1, max_length=128)
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    received_at: AwareDatetime
    properties: JsonObject = Field(default_factory=dict)
    context: JsonObject = Field(default_factory=dict)
    options: JsonObject = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    request: RequestInfo = Field(default_factory=RequestInfo)
    protocol: Literal["tracardi", "segment", "snowplow", "collect", "kafka"] = "kafka"

    @property
    def profile_less(self) -> bool:
        """Sent with ``options.profile_less`` (``?profile_less=true``, ``/collect``): stored as
        an event only. ``profile_id`` is then just the Kafka key; no profile, session,
        identifier or identify state is created for it."""
        return self.options.get("profile_less") is True


class FailedEvent(_Message):
    """What a stage could not process, with the reason and the original bytes."""

    v: Literal[1] = 1
    stage: str
    reason: str
    code: str = "invalid"  # a short, bounded name for the reason (metrics label)
    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    failed_at: datetime
    payload: str  # the original message, decoded as UTF-8 with replacement
