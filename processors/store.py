"""The store stage's decisions: which rows to write for a batch of events. Pure; no I/O.

Writing is idempotent by event id (the adapter inserts with ``ON CONFLICT DO NOTHING``
and counts profile and session activity only for rows that were new), so any replay
stores each event exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from processors.errors import InvalidEvent
from schemas import RawEvent
from schemas.enrichment import EnrichedEvent

__all__ = ["EVENT_COLUMNS", "ROW_OFFSET", "ROW_PARTITION", "EventRow", "Located", "plan_event_rows"]

STAGE = "store"

EVENT_COLUMNS = (
    "id",
    "type",
    "source_id",
    "profile_id",
    "session_id",
    "received_at",
    "protocol",
    "properties",
    "context",
    "options",
    "tags",
    "request",
    "kafka_partition",
    "kafka_offset",
    "enrichment",
)

ROW_PARTITION = EVENT_COLUMNS.index("kafka_partition")
ROW_OFFSET = EVENT_COLUMNS.index("kafka_offset")

EventRow = tuple[
    str,
    str,
    str,
    str,
    str | None,
    datetime,
    str,
    str,
    str,
    str,
    list[str],
    str,
    int,
    int,
    str | None,
]


@dataclass(frozen=True)
class Located:
    """An event with where it was read from."""

    event: RawEvent
    partition: int
    offset: int


def plan_event_rows(
    batch: Sequence[Located],
) -> tuple[list[EventRow], list[tuple[Located, InvalidEvent]]]:
    """Rows for the events table (first copy of each id wins), and the events PostgreSQL
    cannot hold, each with the reason."""
    rows: list[EventRow] = []
    rejected: list[tuple[Located, InvalidEvent]] = []
    seen: set[str] = set()
    for item in batch:
        if item.event.id in seen:
            continue
        seen.add(item.event.id)
        try:
            rows.append(_row(item))
        except InvalidEvent as exc:
            rejected.append((item, exc))
    return rows, rejected


def _row(item: Located) -> EventRow:
    e = item.event
    if any(
        "\x00" in text
        for text in (e.id, e.type, e.source_id, e.profile_id, e.session_id or "", *e.tags)
    ):
        raise InvalidEvent(STAGE, "an id, the type or a tag contains a NUL character", e.id)
    return (
        e.id,
        e.type,
        e.source_id,
        e.profile_id,
        e.session_id,
        e.received_at,
        e.protocol,
        _json(e, e.properties, "properties"),
        _json(e, e.context, "context"),
        _json(e, e.options, "options"),
        list(e.tags),
        _json(e, e.request.model_dump(), "request"),
        item.partition,
        item.offset,
        _enrichment(e),
    )


def _enrichment(event: RawEvent) -> str | None:
    """The enrich stage's findings, when the event went through it."""
    if not isinstance(event, EnrichedEvent):
        return None
    return _json(event, event.enrichment.model_dump(exclude_defaults=True), "enrichment")


def _json(event: RawEvent, value: object, field: str) -> str:
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(STAGE, f"{field} cannot be stored as JSON: {exc}", event.id) from None
    if "\\u0000" in text:
        raise InvalidEvent(
            STAGE,
            f"{field} contains a NUL character (\\u0000), which PostgreSQL cannot store",
            event.id,
        )
    return text
