"""``trackflow failed list|replay``: the decisions, apart from the I/O. Pure; no I/O.

    FailedFilter   --stage, --since, --limit -> one SELECT over failed_events
    FailedRow      one row of failed_events
    plan_replay    per row: publish (key, value) to the topic it failed on, or skip, and why
    replay_key     the record key: the event's profile id, else the failed event's id
    EVENT_TOPICS   the topics whose failures can be replayed (to the same topic)
    table          rows of text as aligned columns

Replaying is for failures caused by a defect fixed since. A failure read from an event
topic (raw, enriched, ...) holds the event as its payload, and is published again to the
topic it was read from, so that the stage that refused it sees it again (an enriched event
is not enriched twice: that would hash configured fields twice). The payload is checked
with the code that runs now (decoded as that topic's event, and turned into an events row),
so only what would now be stored is published, unless forced.

Stored payloads are text: invalid UTF-8 and NUL characters were replaced by U+FFFD when
they were recorded, so such payloads are not the original bytes and are skipped unless
forced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from processors.store import Located, plan_event_rows
from schemas import InvalidMessage, RawEvent, decode_event
from schemas.enrichment import EnrichedEvent
from schemas.topics import ALL_TOPICS, EVENTS_ENRICHED, EVENTS_FAILED

__all__ = [
    "COLUMNS",
    "EVENT_TOPICS",
    "FailedFilter",
    "FailedRow",
    "ReplayDecision",
    "parse_since",
    "plan_replay",
    "replay_key",
    "table",
]

COLUMNS = (
    "id",
    "stage",
    "reason",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "event_id",
    "failed_at",
    "payload",
)
_LOSSY = "\ufffd"
# Topics of events on their way to the store (raw, enriched, ...): a failure read from one of
# them has an event as its payload, which that topic takes again.
EVENT_TOPICS = tuple(
    t.name for t in ALL_TOPICS if t.name.startswith("trackflow.events.") and t.name != EVENTS_FAILED
)


def parse_since(text: str) -> datetime:
    """An ISO-8601 date or time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FailedFilter:
    stage: str | None = None
    since: datetime | None = None
    limit: int | None = None
    event_topics_only: bool = False

    def select(self, *, with_replayed_at: bool) -> tuple[str, list[object]]:
        """The query for the matching rows, oldest first (``limit``: the newest N of them)."""
        columns = [*COLUMNS, "replayed_at" if with_replayed_at else "NULL AS replayed_at"]
        where, params = self._where()
        query = f"SELECT {', '.join(columns)} FROM failed_events{where} ORDER BY id DESC"
        if self.limit is not None:
            query += " LIMIT %s"
            params.append(self.limit)
        return f"SELECT * FROM ({query}) AS newest ORDER BY id", params

    def count(self) -> tuple[str, list[object]]:
        where, params = self._where()
        return f"SELECT count(*) FROM failed_events{where}", params

    def _where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.stage is not None:
            clauses.append("stage = %s")
            params.append(self.stage)
        if self.since is not None:
            clauses.append("failed_at >= %s")
            params.append(self.since)
        if self.event_topics_only:
            clauses.append("topic = ANY(%s)")
            params.append(list(EVENT_TOPICS))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


@dataclass(frozen=True)
class FailedRow:
    id: int
    stage: str
    reason: str
    topic: str
    partition: int
    offset: int
    event_id: str | None
    failed_at: datetime
    payload: str
    replayed_at: datetime | None = None

    @classmethod
    def from_db(cls, row: Sequence[Any]) -> FailedRow:
        return cls(*row)


_MODELS: dict[str, type[RawEvent]] = {EVENTS_ENRICHED: EnrichedEvent}  # others: RawEvent


@dataclass(frozen=True)
class ReplayDecision:
    row: FailedRow
    key: bytes | None
    value: bytes
    skip: str | None = None  # why it is not published; None: publish

    @property
    def topic(self) -> str:
        """Where it goes: the topic it was read from when it failed."""
        return self.row.topic

    @property
    def publish(self) -> bool:
        return self.skip is None


def replay_key(payload: str, event_id: str | None) -> bytes | None:
    """The event's profile id when the payload names one, so the replay lands on the
    partition of that profile's other events; else the failed event's id; else no key."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        obj = None
    profile_id = obj.get("profile_id") if isinstance(obj, dict) else None
    if isinstance(profile_id, str) and profile_id:
        return profile_id.encode()
    return event_id.encode() if event_id else None


def plan_replay(rows: Iterable[FailedRow], *, force: bool = False) -> list[ReplayDecision]:
    return [_decide(row, force) for row in rows]


def _decide(row: FailedRow, force: bool) -> ReplayDecision:
    value = row.payload.encode()
    decision = ReplayDecision(row, replay_key(row.payload, row.event_id), value)
    if row.topic not in EVENT_TOPICS:
        reason = f"read from {row.topic}, whose messages are not events"
        return ReplayDecision(row, None, value, reason)  # not even with --force
    if row.replayed_at is not None and not force:
        return _skipped(decision, f"already replayed at {row.replayed_at.isoformat()}")
    problem = _still_failing(row.payload, _MODELS.get(row.topic, RawEvent))
    if problem is not None and not force:
        return _skipped(decision, problem)
    return decision


def _skipped(decision: ReplayDecision, reason: str) -> ReplayDecision:
    return ReplayDecision(decision.row, decision.key, decision.value, reason)


def _still_failing(payload: str, model: type[RawEvent]) -> str | None:
    """Why the running code would refuse the payload again, or None if it would store it."""
    if _LOSSY in payload:
        return "payload is not the original bytes (invalid UTF-8 or NUL was replaced)"
    try:
        event = decode_event(payload.encode(), model)
    except InvalidMessage as exc:
        return f"still invalid: {exc.reason}"
    _rows, rejected = plan_event_rows([Located(event, 0, 0)])
    if rejected:
        return f"still unstorable: {rejected[0][1].reason}"
    return None


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], width: int = 60) -> str:
    """Left-aligned columns; cells cut to ``width`` characters, newlines shown as spaces."""
    cells = [[_cell(v, width) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *cells]
    ]
    return "\n".join(lines)


def _cell(value: object, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"
