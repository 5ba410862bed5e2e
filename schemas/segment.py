"""Segment's HTTP tracking API: the messages its libraries send to ``/v1/*``.

Lenient like Segment: unknown fields are ignored, an explicit ``null`` is the same as a
missing field, ids may be strings or numbers. Only ``type`` and (for ``track``) ``event``
and one of ``anonymousId`` / ``userId`` are required; the gateway checks those per message
so that one bad message does not sink its batch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SEGMENT_TYPES", "SegmentBatch", "SegmentMessage", "SegmentType"]

JsonObject = dict[str, Any]
SegmentType = Literal["track", "identify", "page", "screen", "group", "alias"]
SEGMENT_TYPES: tuple[SegmentType, ...] = ("track", "identify", "page", "screen", "group", "alias")
_Id = str | int


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SegmentMessage(_Lenient):
    """One call: ``track``, ``identify``, ``page``, ``screen``, ``group`` or ``alias``."""

    type: SegmentType | None = None  # given by the path of the single-call endpoints
    messageId: str | None = Field(default=None, min_length=1, max_length=128)
    anonymousId: _Id | None = None
    userId: _Id | None = None
    event: str | None = Field(default=None, min_length=1, max_length=128)
    name: str | None = None
    category: str | None = None
    properties: JsonObject | None = None
    traits: JsonObject | None = None
    context: JsonObject | None = None
    integrations: JsonObject | None = None
    groupId: _Id | None = None
    previousId: _Id | None = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    sentAt: str | None = None
    writeKey: str | None = None


class SegmentBatch(_Lenient):
    """``/v1/batch``: messages, with a context and integrations shared by all of them."""

    batch: list[SegmentMessage] = Field(min_length=1)
    context: JsonObject | None = None
    integrations: JsonObject | None = None
    sentAt: str | None = None
    writeKey: str | None = None
