"""JSON encoding (orjson) of every message, with a version check on decode.

``decode_raw_event`` never raises anything but :class:`InvalidMessage`, whose ``reason``
names the problem (bad JSON, unsupported version, the failing field).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.envelope import RAW_EVENT_VERSION, RawEvent

__all__ = [
    "InvalidMessage",
    "decode_event",
    "decode_raw_event",
    "describe_validation_error",
    "encode",
]

E = TypeVar("E", bound=RawEvent)


class InvalidMessage(ValueError):
    """A message on a topic that no stage can process; goes to the failed-events topic."""

    def __init__(self, reason: str, code: str = "invalid_schema") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def encode(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="python", exclude_none=False))


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """``events.0.type: String should have at least 1 character (got '')``, joined."""
    parts = []
    for err in exc.errors()[:limit]:
        field = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{field}: {err['msg']} (got {_short(err.get('input'))})")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode_raw_event(data: bytes | None) -> RawEvent:
    return decode_event(data, RawEvent)


def decode_event(data: bytes | None, model: type[E]) -> E:
    """Decode a message of an event topic as ``model`` (a RawEvent or a later stage's)."""
    obj = _loads(data)
    version = obj.get("v")
    if version != RAW_EVENT_VERSION:
        raise InvalidMessage(
            f"unsupported envelope version {version!r} (supported: {RAW_EVENT_VERSION})",
            "unsupported_version",
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidMessage("invalid event: " + describe_validation_error(exc)) from None


def _loads(data: bytes | None) -> dict[str, Any]:
    if not data:
        raise InvalidMessage("empty message", "empty")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"invalid JSON: {exc}", "invalid_json") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(obj).__name__}", "not_an_object")
    return obj


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
