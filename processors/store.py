"""The store stage's decisions: which rows to write for a batch of events. Pure; no I/O.

Writing is idempotent by event id (the adapter inserts with ``ON CONFLICT DO NOTHING``
and counts profile and session activity only for rows that were new), so any replay
stores each event exactly once.

Profile activity (counts, last geo and device, the traits of ``identify`` events) goes to
canonical profiles only, in id order, as ``processors.identity.apply`` requires of every
writer of profile rows: ``canonical_activity`` maps merged ids to the profile they were
merged into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson

from processors.errors import InvalidEvent
from schemas import RawEvent
from schemas.enrichment import EnrichedEvent

__all__ = [
    "EVENT_COLUMNS",
    "ROW_OFFSET",
    "ROW_PARTITION",
    "EventRow",
    "Located",
    "ProfileActivity",
    "canonical_activity",
    "identify_traits",
    "plan_event_rows",
]

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
    str | None,  # profile id: None for profile-less events
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


@dataclass(frozen=True)
class ProfileActivity:
    """What a batch of new events adds to one profile: counts, times, the last known geo and
    device, and the traits of its ``identify`` events with when each was set."""

    profile_id: str
    first_at: datetime
    last_at: datetime
    count: int
    geo: object = None
    device: object = None
    traits: dict[str, object] = field(default_factory=dict)
    trait_times: dict[str, datetime] = field(default_factory=dict)


def identify_traits(
    rows: Sequence[tuple[datetime, object]],
) -> tuple[dict[str, object], dict[str, datetime]]:
    """Traits of a profile's identify events (``(received_at, traits)``): latest wins."""
    traits: dict[str, object] = {}
    times: dict[str, datetime] = {}
    for at, values in sorted(rows, key=lambda row: row[0]):
        if isinstance(values, dict):
            for key, value in values.items():
                traits[key], times[key] = value, at
    return traits, times


def canonical_activity(
    activity: Sequence[ProfileActivity], merged_into: Mapping[str, str]
) -> list[ProfileActivity]:
    """The activity of each canonical profile (``merged_into`` maps merged ids to theirs),
    in id order: the order every writer of profile rows locks them in."""
    combined: dict[str, ProfileActivity] = {}
    for item in activity:
        target = merged_into.get(item.profile_id, item.profile_id)
        known = combined.get(target)
        item = replace(item, profile_id=target)
        combined[target] = item if known is None else _combine(known, item)
    return [combined[key] for key in sorted(combined)]


def _combine(a: ProfileActivity, b: ProfileActivity) -> ProfileActivity:
    newer, older = (b, a) if b.last_at >= a.last_at else (a, b)
    traits, times = dict(a.traits), dict(a.trait_times)
    for key, value in b.traits.items():
        if key not in times or times[key] <= b.trait_times[key]:
            traits[key], times[key] = value, b.trait_times[key]
    return ProfileActivity(
        profile_id=a.profile_id,
        first_at=min(a.first_at, b.first_at),
        last_at=newer.last_at,
        count=a.count + b.count,
        geo=newer.geo if newer.geo is not None else older.geo,
        device=newer.device if newer.device is not None else older.device,
        traits=traits,
        trait_times=times,
    )


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
        None if e.profile_less else e.profile_id,
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
