"""What conditions and templates read: the event, the profile and the session as JSON, and
the evaluation's "now". Field paths resolve to a value or :data:`MISSING`, never raise."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from schemas import RawEvent

__all__ = ["MISSING", "Missing", "Scope", "to_json"]


class Missing(Enum):
    MISSING = "missing"


MISSING = Missing.MISSING


def to_json(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain JSON copy: datetimes as ISO-8601, non-string keys as strings, the unknown as
    ``str()``. Profiles and sessions may come straight from database rows."""
    if not value:
        return {}
    try:
        options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
        copy = orjson.loads(orjson.dumps(dict(value), default=str, option=options))
    except (TypeError, orjson.JSONEncodeError):  # ints over 64 bits, lone surrogates
        copy = json.loads(json.dumps(dict(value), default=str))
    return copy if isinstance(copy, dict) else {}


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    event: Mapping[str, Any]
    profile: Mapping[str, Any]
    session: Mapping[str, Any]
    now: datetime

    @classmethod
    def of(
        cls,
        event: RawEvent,
        profile: Mapping[str, Any] | None,
        session: Mapping[str, Any] | None,
        now: datetime,
    ) -> Scope:
        return cls(_event_json(event), to_json(profile), to_json(session), now)

    def with_profile(self, profile: Mapping[str, Any]) -> Scope:
        return dataclasses.replace(self, profile=profile)

    def resolve(self, path: tuple[str, ...]) -> object:
        """The value at ``path`` (``("event", "properties", "total")``) or ``MISSING``."""
        value: object = {"event": self.event, "profile": self.profile, "session": self.session}
        for segment in path:
            value = _step(value, segment)
            if value is MISSING:
                break
        return value


def _event_json(event: RawEvent) -> dict[str, Any]:
    try:
        return event.model_dump(mode="json")
    except UnicodeEncodeError:  # a lone surrogate in a key; only from code, never from Kafka
        return to_json(event.model_dump(mode="python") | {"received_at": _iso(event.received_at)})


def _iso(moment: datetime) -> str:
    """As pydantic writes it: ``2026-03-01T12:00:00Z``."""
    return moment.isoformat().replace("+00:00", "Z")


def _step(value: object, segment: str) -> object:
    if isinstance(value, Mapping):
        return value.get(segment, MISSING)
    if isinstance(value, list | tuple) and segment.isascii() and segment.isdigit():
        index = int(segment)
        return value[index] if index < len(value) else MISSING
    return MISSING
