"""``trackflow failed``: filtering, choosing the key, deciding what to replay. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.topics import EVENTS_ENRICHED, EVENTS_FAILED, EVENTS_RAW
from trackflow.failed import (
    EVENT_TOPICS,
    FailedFilter,
    FailedRow,
    parse_since,
    plan_replay,
    replay_key,
    table,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _payload(**overrides: object) -> str:
    event = {
        "v": 1,
        "id": "e1",
        "type": "page-view",
        "source_id": "site",
        "profile_id": "p1",
        "received_at": "2026-03-01T11:59:00+00:00",
    }
    return orjson.dumps({**event, **overrides}).decode()


def _row(payload: str, **overrides: object) -> FailedRow:
    fields: dict[str, object] = {
        "id": 7,
        "stage": "store",
        "reason": "a since-fixed defect",
        "topic": EVENTS_RAW,
        "partition": 2,
        "offset": 40,
        "event_id": "e1",
        "failed_at": NOW,
        "payload": payload,
        **overrides,
    }
    return FailedRow(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T12:30:00Z", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
        (
            "2026-03-01T12:30+02:00",
            datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_since_is_iso_8601_and_utc_without_a_zone(text: str, expected: datetime) -> None:
    assert parse_since(text) == expected


def test_a_bad_since_names_the_value_and_the_format() -> None:
    with pytest.raises(ValueError, match="'yesterday' is not an ISO-8601 date or time"):
        parse_since("yesterday")


def test_the_filter_becomes_one_parameterised_query() -> None:
    query = FailedFilter(stage="store", since=NOW, limit=5, event_topics_only=True)
    sql, params = query.select(with_replayed_at=True)
    assert "WHERE stage = %s AND failed_at >= %s AND topic = ANY(%s)" in sql
    assert "replayed_at" in sql and "LIMIT %s" in sql
    assert params == ["store", NOW, list(EVENT_TOPICS), 5]
    assert EVENTS_RAW in EVENT_TOPICS and EVENTS_FAILED not in EVENT_TOPICS
    sql, params = FailedFilter().select(with_replayed_at=False)
    assert "WHERE" not in sql and "NULL AS replayed_at" in sql and params == []
    assert FailedFilter(stage="store").count() == (
        "SELECT count(*) FROM failed_events WHERE stage = %s",
        ["store"],
    )


@pytest.mark.parametrize(
    ("payload", "event_id", "key"),
    [
        (_payload(profile_id="p9"), "e1", b"p9"),  # the profile's partition, as the gateway
        ("{not json", "e1", b"e1"),
        (orjson.dumps({"profile_id": 5}).decode(), "e1", b"e1"),
        ("[]", None, None),
    ],
)
def test_the_key_is_the_profile_id_else_the_event_id(
    payload: str, event_id: str | None, key: bytes | None
) -> None:
    assert replay_key(payload, event_id) == key


def test_only_what_the_running_code_would_store_is_replayed() -> None:
    rows = [
        _row(_payload()),
        _row(_payload(v=99), id=8),
        _row(_payload(properties={"x": "a\x00b"}), id=9),
        _row(_payload(type="\ufffd"), id=10),
        _row(_payload(), id=11, topic=EVENTS_FAILED),
        _row(_payload(), id=12, replayed_at=NOW),
    ]
    decisions = plan_replay(rows)
    assert [(d.row.id, d.skip) for d in decisions] == [
        (7, None),
        (8, "still invalid: unsupported envelope version 99 (supported: 1)"),
        (9, "still unstorable: properties contains a NUL character (\\u0000), which "
            "PostgreSQL cannot store"),
        (10, "payload is not the original bytes (invalid UTF-8 or NUL was replaced)"),
        (11, f"read from {EVENTS_FAILED}, whose messages are not events"),
        (12, "already replayed at 2026-03-01T12:00:00+00:00"),
    ]  # fmt: skip
    assert decisions[0].key == b"p1" and decisions[0].value == rows[0].payload.encode()
    assert decisions[0].topic == EVENTS_RAW
    forced = plan_replay(rows, force=True)
    assert [d.row.id for d in forced if d.publish] == [7, 8, 9, 10, 12]


def test_the_table_aligns_columns_and_cuts_long_cells() -> None:
    text = table(("ID", "REASON"), [(1, "short"), (22, "x" * 80), (3, None)], width=10)
    assert text.splitlines() == ["ID  REASON", "1   short", "22  xxxxxxxxx…", "3   -"]


def test_a_failure_goes_back_to_the_topic_it_failed_on() -> None:
    enriched = _payload(enrichment={"language": None})
    [decision] = plan_replay([_row(enriched, topic=EVENTS_ENRICHED, stage="store")])
    assert decision.publish and decision.topic == EVENTS_ENRICHED
    [refused] = plan_replay([_row(_payload(enrichment=5), topic=EVENTS_ENRICHED)])
    assert refused.skip is not None and refused.skip.startswith("still invalid: invalid event")
