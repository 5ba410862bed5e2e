"""The store stage's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.store import EVENT_COLUMNS, ROW_OFFSET, ROW_PARTITION, Located, plan_event_rows
from schemas import RawEvent


def _event(event_id: str, **kw: object) -> RawEvent:
    fields: dict[str, object] = {
        "id": event_id,
        "type": "t",
        "source_id": "s",
        "profile_id": "p",
        "received_at": datetime(2026, 1, 1, tzinfo=UTC),
        **kw,
    }
    return RawEvent.model_validate(fields)


def test_one_row_per_event_id_first_copy_wins() -> None:
    batch = [Located(_event("a"), 0, 10), Located(_event("b"), 0, 11), Located(_event("a"), 1, 3)]
    rows, rejected = plan_event_rows(batch)
    assert [r[0] for r in rows] == ["a", "b"]
    assert (rows[0][ROW_PARTITION], rows[0][ROW_OFFSET]) == (0, 10)
    assert rejected == []
    assert all(len(r) == len(EVENT_COLUMNS) for r in rows)


def test_json_columns_are_serialised() -> None:
    [row], _ = plan_event_rows([Located(_event("a", properties={"x": [1, "ü"]}), 0, 0)])
    assert row[EVENT_COLUMNS.index("properties")] == '{"x":[1,"ü"]}'


def test_nul_characters_are_rejected_with_a_reason() -> None:
    batch = [
        Located(_event("a", properties={"x": "\x00"}), 0, 0),
        Located(_event("b", tags=["\x00"]), 0, 1),
        Located(_event("c"), 0, 2),
    ]
    rows, rejected = plan_event_rows(batch)
    assert [r[0] for r in rows] == ["c"]
    assert [(item.event.id, "NUL" in exc.reason) for item, exc in rejected] == [
        ("a", True),
        ("b", True),
    ]


def test_a_profile_less_event_is_stored_without_a_profile_id() -> None:
    batch = [Located(_event("a", options={"profile_less": True}), 0, 0), Located(_event("b"), 0, 1)]
    rows, _ = plan_event_rows(batch)
    column = EVENT_COLUMNS.index("profile_id")
    assert [r[column] for r in rows] == [None, "p"]
