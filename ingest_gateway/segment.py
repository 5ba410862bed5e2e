"""Segment's HTTP tracking API mapped onto raw events. Pure; no I/O.

How a Segment message becomes a :class:`~schemas.RawEvent`:

* ``messageId`` is the event id (a retried message is stored once); a new id when absent;
* ``anonymousId`` is the profile id; without one, a stable id derived from ``userId``
  (:func:`profile_id_for_user`), so that repeated calls agree;
* the type is the event name for ``track`` and ``identify``, ``page``, ``screen``,
  ``group`` or ``alias`` otherwise;
* ``properties`` stay the event's properties; Segment's ``context`` is the event context
  (the enrich stage reads its ``page``, ``campaign``, ``ip``, ``locale``, ``timezone``), with
  ``user_id`` (``userId``), ``traits`` (identify traits over ``context.traits``),
  ``previous_id`` (alias ``previousId``) and ``group`` (``groupId`` and group traits) for
  the identify stage, and ``segment`` keeping the rest of the message (``type``,
  ``messageId``, ``anonymousId``, ``userId``, ``event``, ``name``, ``category``,
  ``integrations``, ``timestamp``, ``originalTimestamp``, ``sentAt``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from ingest_gateway.batch import Rejected, rejected_from_validation
from schemas import RawEvent, RequestInfo
from schemas.segment import SegmentMessage, SegmentType

__all__ = [
    "BATCH_LIMIT_BYTES",
    "MESSAGE_LIMIT_BYTES",
    "SegmentItems",
    "profile_id_for_user",
    "segment_event",
    "segment_items",
]

BATCH_LIMIT_BYTES = 500 * 1024  # Segment: 500 KB per batch request
MESSAGE_LIMIT_BYTES = 32 * 1024  # Segment: 32 KB per message
_USER_NAMESPACE = uuid.UUID("4f5a1d0e-6c1b-5e47-9a55-7472616b666c")
_KEPT = ("type", "messageId", "anonymousId", "userId", "event", "name", "category",
         "groupId", "timestamp", "originalTimestamp", "sentAt")  # fmt: skip


def profile_id_for_user(user_id: str | int) -> str:
    """The profile id of a user who sent no anonymous id: the same for every call."""
    return str(uuid.uuid5(_USER_NAMESPACE, f"user:{user_id}"))


class SegmentItems:
    """The messages of one request, with what the batch shares (context, integrations)."""

    def __init__(self, body: Any, kind: SegmentType | None) -> None:
        if not isinstance(body, dict):
            raise ValueError(f"expected a JSON object, got {type(body).__name__}")
        self.write_key = _text(body.get("writeKey"))
        if kind is None:
            batch = body.get("batch")
            if not isinstance(batch, list) or not batch:
                raise ValueError("batch: expected a non-empty list of messages")
            self.raw: list[Any] = batch
            self.context = body.get("context") if isinstance(body.get("context"), dict) else {}
            integrations = body.get("integrations")
            self.integrations = integrations if isinstance(integrations, dict) else {}
        else:
            self.raw = [{**body, "type": kind}]
            self.context, self.integrations = {}, {}
        self.prefix = "batch" if kind is None else ""


def segment_items(
    items: SegmentItems,
    *,
    source_id: str,
    request: RequestInfo,
    new_id: Callable[[], str],
    now: datetime,
) -> tuple[list[RawEvent], list[Rejected]]:
    events: list[RawEvent] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(items.raw):
        result = _one(index, raw, items, source_id, request, new_id, now)
        (events if isinstance(result, RawEvent) else rejected).append(result)  # type: ignore[arg-type]
    return events, rejected


def _one(
    index: int,
    raw: Any,
    items: SegmentItems,
    source_id: str,
    request: RequestInfo,
    new_id: Callable[[], str],
    now: datetime,
) -> RawEvent | Rejected:
    where = f"{items.prefix}.{index}" if items.prefix else "message"
    size = len(orjson.dumps(raw))
    if size > MESSAGE_LIMIT_BYTES:
        return Rejected(
            index,
            f"{where} is {size} bytes; the limit is {MESSAGE_LIMIT_BYTES} bytes (32 KB)"
            " per message",
            413,
            "payload_too_large",
        )
    try:
        message = SegmentMessage.model_validate(raw)
    except ValidationError as exc:
        return rejected_from_validation(index, items.prefix, exc)
    try:
        return segment_event(
            message,
            source_id=source_id,
            request=request,
            new_id=new_id,
            now=now,
            shared_context=items.context,
            shared_integrations=items.integrations,
        )
    except ValueError as exc:
        return Rejected(index, f"{where}.{exc}")


def segment_event(
    message: SegmentMessage,
    *,
    source_id: str,
    request: RequestInfo,
    new_id: Callable[[], str],
    now: datetime,
    shared_context: dict[str, Any] | None = None,
    shared_integrations: dict[str, Any] | None = None,
) -> RawEvent:
    """One Segment message as a raw event; ``ValueError`` names the field that is missing."""
    kind = message.type
    if kind is None:
        raise ValueError("type: required (track, identify, page, screen, group or alias)")
    if kind == "track" and message.event is None:
        raise ValueError("event: required for a track call (the event name)")
    profile_id = _profile_id(message)
    context: dict[str, Any] = {**(shared_context or {}), **(message.context or {})}
    if message.userId is not None:
        context["user_id"] = message.userId
    if kind == "identify" and message.traits:
        known = context.get("traits")
        context["traits"] = {**(known if isinstance(known, dict) else {}), **message.traits}
    if kind == "alias":
        if message.previousId is None:
            raise ValueError("previousId: required for an alias call")
        context["previous_id"] = message.previousId
    if kind == "group":
        if message.groupId is None:
            raise ValueError("groupId: required for a group call")
        context["group"] = {"id": message.groupId, "traits": message.traits or {}}
    kept = {k: v for k in _KEPT if (v := getattr(message, k)) is not None}
    integrations = {**(shared_integrations or {}), **(message.integrations or {})}
    context["segment"] = {**kept, "integrations": integrations}
    return RawEvent(
        id=message.messageId or new_id(),
        type=message.event if kind == "track" and message.event else kind,
        source_id=source_id,
        profile_id=profile_id,
        received_at=now,
        properties=message.properties or {},
        context=context,
        request=request,
        protocol="segment",
    )


def _profile_id(message: SegmentMessage) -> str:
    anonymous = message.anonymousId
    if anonymous is not None and str(anonymous) != "":
        value = str(anonymous)
        if len(value) > 128:
            raise ValueError(f"anonymousId: at most 128 characters (got {len(value)})")
        return value
    if message.userId is not None and str(message.userId) != "":
        return profile_id_for_user(message.userId)
    raise ValueError("anonymousId or userId: one of them is required")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
