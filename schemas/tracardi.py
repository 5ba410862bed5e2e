"""The payload of ``POST /track``, as Tracardi's browser tracker sends it.

Only what trackflow uses is modelled; unknown fields are accepted and ignored, so the
unmodified tracker works.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EntityRef", "OptionalEntityRef", "TrackEvent", "TrackPayload"]

JsonObject = dict[str, Any]
_Id = Field(min_length=1, max_length=128)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EntityRef(_Lenient):
    id: str = _Id


class OptionalEntityRef(_Lenient):
    id: str | None = Field(default=None, min_length=1, max_length=128)


class TrackEvent(_Lenient):
    type: str = Field(min_length=1, max_length=128)
    id: str | None = Field(default=None, min_length=1, max_length=128)
    properties: JsonObject = Field(default_factory=dict)
    context: JsonObject = Field(default_factory=dict)
    options: JsonObject = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class TrackPayload(_Lenient):
    source: EntityRef
    session: OptionalEntityRef | None = None
    profile: OptionalEntityRef | None = None
    context: JsonObject = Field(default_factory=dict)
    properties: JsonObject = Field(default_factory=dict)
    options: JsonObject = Field(default_factory=dict)
    events: list[TrackEvent] = Field(min_length=1)
