"""The wire contract: decoding never fails with anything but InvalidMessage and a reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import InvalidMessage, RawEvent, decode_raw_event, encode

EVENT = RawEvent(
    id="e1",
    type="page-view",
    source_id="web",
    profile_id="p1",
    session_id="s1",
    received_at=datetime(2026, 5, 1, tzinfo=UTC),
    properties={"n": 1, "s": "ü"},
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def test_round_trip() -> None:
    assert decode_raw_event(encode(EVENT)) == EVENT


@given(st.binary())
def test_arbitrary_bytes_give_invalid_message(data: bytes) -> None:
    try:
        decode_raw_event(data)
    except InvalidMessage as exc:
        assert exc.reason


@given(json_values)
def test_arbitrary_json_gives_invalid_message_or_an_event(value: object) -> None:
    try:
        assert isinstance(decode_raw_event(orjson.dumps(value)), RawEvent)
    except InvalidMessage as exc:
        assert exc.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty message"),
        (b"{nope", "invalid JSON"),
        (b"[1]", "expected a JSON object, got list"),
        (b'{"v": 7}', "unsupported envelope version 7 (supported: 1)"),
        (b'{"id": "x"}', "unsupported envelope version None"),
        (
            orjson.dumps({**orjson.loads(encode(EVENT)), "type": 5}),
            "type: Input should be a valid string",
        ),
        (
            orjson.dumps({**orjson.loads(encode(EVENT)), "received_at": "2026-01-01T00:00:00"}),
            "received_at",
        ),
    ],
)
def test_reasons_name_the_problem(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_raw_event(payload)
    assert reason in info.value.reason


def test_direct_producers_may_omit_optional_fields() -> None:
    minimal = {
        "v": 1,
        "id": "e",
        "type": "t",
        "source_id": "svc",
        "profile_id": "p",
        "received_at": "2026-01-01T00:00:00Z",
    }
    event = decode_raw_event(orjson.dumps(minimal))
    assert event.protocol == "kafka" and event.session_id is None and event.properties == {}
