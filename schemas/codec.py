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
    "MAX_DEPTH",
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


MAX_DEPTH = 64  # nesting of objects and arrays; orjson itself writes at most 254 levels


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Depth of nested objects/arrays, counted up to ``limit + 1`` (then it stops looking)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                children.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                children.extend(v for v in item if isinstance(v, dict | list))
        level = children
    return depth


def too_deep(data: bytes, value: Any) -> bool:
    """Whether ``value`` (parsed from ``data``) nests deeper than MAX_DEPTH; cheap when flat."""
    if data.count(b"{") + data.count(b"[") <= MAX_DEPTH:
        return False
    return nesting_depth(value) > MAX_DEPTH


def decode_event(data: bytes | None, model: type[E]) -> E:
    """Decode a message of an event topic as ``model`` (a RawEvent or a later stage's)."""
    obj = _loads(data)
    if data is not None and too_deep(data, obj):
        raise InvalidMessage(f"nested deeper than {MAX_DEPTH} levels", "too_deep")
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
