"""End to end on the real broker and database: HTTP -> Kafka -> Faust -> PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from aiokafka import AIOKafkaProducer

from schemas import RawEvent, encode
from schemas.producer import raw_event_message
from schemas.topics import EVENTS_RAW
from tests.integration.conftest import Pipeline
from tests.integration.harness import cli, poll


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _query(p: Pipeline, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(p.database_url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _post(p: Pipeline, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{p.gateway_url}/track", json=body, headers=headers, timeout=10)


async def _produce(bootstrap: str, key: bytes, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(EVENTS_RAW, value=value, key=key)
    finally:
        await producer.stop()


def test_event_travels_from_http_to_a_postgres_row(pipeline: Pipeline) -> None:
    response = _post(
        pipeline,
        {
            "source": {"id": pipeline.source_id},
            "context": {"page": {"url": "https://shop.example/cart"}},
            "events": [
                {
                    "type": "purchase",
                    "properties": {"total": 99.5, "items": ["a", "b"]},
                    "tags": ["checkout"],
                }
            ],
        },
        **{"user-agent": "pytest-agent"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [event_id] = body["events"]
    profile_id, session_id = body["profile"]["id"], body["session"]["id"]

    rows = poll(
        lambda: _query(
            pipeline,
            "SELECT id, profile_id, session_id, type, properties, tags,"
            " context, request->>'user_agent' FROM events WHERE id = %s",
            event_id,
        ),
        30,
        f"event {event_id} in PostgreSQL",
    )
    assert rows == [
        (
            event_id,
            profile_id,
            session_id,
            "purchase",
            {"total": 99.5, "items": ["a", "b"]},
            ["checkout"],
            {"page": {"url": "https://shop.example/cart"}},
            "pytest-agent",
        )
    ]
    assert _query(pipeline, "SELECT event_count FROM profiles WHERE id = %s", profile_id) == [(1,)]
    assert _query(
        pipeline, "SELECT profile_id, event_count FROM sessions WHERE id = %s", session_id
    ) == [(profile_id, 1)]


def test_a_returning_profile_keeps_its_id_and_counts(pipeline: Pipeline) -> None:
    profile_id = _uid("profile")
    for _ in range(3):
        response = _post(
            pipeline,
            {
                "source": {"id": pipeline.source_id},
                "profile": {"id": profile_id},
                "events": [{"type": "page-view"}, {"type": "scroll"}],
            },
        )
        assert response.json()["profile"]["id"] == profile_id
    poll(
        lambda: (
            _query(pipeline, "SELECT event_count FROM profiles WHERE id = %s", profile_id) == [(6,)]
        ),
        30,
        "six events counted on the profile",
    )
    types = _query(
        pipeline, "SELECT type FROM events WHERE profile_id = %s ORDER BY kafka_offset", profile_id
    )
    assert [t for (t,) in types] == ["page-view", "scroll"] * 3


def test_the_same_event_sent_twice_is_stored_once(pipeline: Pipeline) -> None:
    profile_id, event_id = _uid("profile"), _uid("event")
    body = {
        "source": {"id": pipeline.source_id},
        "profile": {"id": profile_id},
        "events": [{"type": "signup", "id": event_id}],
    }
    assert _post(pipeline, body).status_code == 200
    assert _post(pipeline, body).status_code == 200
    marker = _uid("marker")  # sent after both copies, on the same profile (same partition)
    _post(pipeline, {**body, "events": [{"type": "marker", "id": marker}]})
    poll(
        lambda: _query(pipeline, "SELECT 1 FROM events WHERE id = %s", marker),
        30,
        "the marker event",
    )
    assert _query(pipeline, "SELECT count(*) FROM events WHERE id = %s", event_id) == [(1,)]
    assert _query(pipeline, "SELECT event_count FROM profiles WHERE id = %s", profile_id) == [(2,)]


def test_poison_messages_go_to_failed_events_and_the_flow_goes_on(pipeline: Pipeline) -> None:
    key = _uid("poison").encode()
    good = RawEvent(
        id=_uid("good"),
        type="after-poison",
        source_id="backend",
        profile_id=key.decode(),
        received_at=datetime.now(UTC),
    )
    poison = [b"{not json", orjson.dumps({"v": 99, "id": "x"}), orjson.dumps({"v": 1, "id": 5})]
    asyncio.run(_produce(pipeline.kafka, key, [*poison, encode(good)]))

    poll(
        lambda: _query(pipeline, "SELECT 1 FROM events WHERE id = %s", good.id),
        30,
        "the good event",
    )
    failures = poll(
        lambda: (
            (
                rows := _query(
                    pipeline,
                    "SELECT reason, payload FROM failed_events"
                    " WHERE payload = ANY(%s) ORDER BY kafka_offset",
                    [p.decode() for p in poison],
                )
            )
            and len(rows) == 3
            and rows
        ),
        30,
        "three failed-event records",
    )
    reasons = [reason for reason, _ in failures]  # type: ignore[union-attr]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "unsupported envelope version 99 (supported: 1)"
    assert "id: Input should be a valid string" in reasons[2]


def test_backend_services_may_produce_straight_to_kafka(pipeline: Pipeline) -> None:
    event_id, profile_id = _uid("direct"), _uid("p")
    key, value = raw_event_message(
        "invoice-paid",
        profile_id=profile_id,
        source_id="billing",
        properties={"amount": 10},
        event_id=event_id,
    )
    asyncio.run(_produce(pipeline.kafka, key, [value]))
    rows = poll(
        lambda: _query(
            pipeline,
            "SELECT type, protocol, properties, profile_id FROM events WHERE id = %s",
            event_id,
        ),
        30,
        "the directly produced event",
    )
    assert rows == [("invoice-paid", "kafka", {"amount": 10}, profile_id)]


def test_sources_added_and_disabled_take_effect_without_restart(pipeline: Pipeline) -> None:
    source_id = _uid("site")
    body = {"source": {"id": source_id}, "events": [{"type": "page-view"}]}
    assert _post(pipeline, body).status_code == 401

    added = cli("sources", "add", "Late site", "--id", source_id, env=pipeline.env)
    assert added.returncode == 0 and added.stdout.strip() == source_id, added.stderr
    poll(
        lambda: _post(pipeline, body).status_code == 200, 15, "the new source to be accepted", 0.25
    )

    disabled = cli("sources", "disable", source_id, env=pipeline.env)
    assert disabled.returncode == 0, disabled.stderr
    poll(
        lambda: _post(pipeline, body).status_code == 403,
        15,
        "the disabled source to be refused",
        0.25,
    )
    assert "is disabled" in _post(pipeline, body).json()["error"]["message"]

    listed = cli("sources", "list", env=pipeline.env)
    assert any(line.startswith(source_id) and " no " in line for line in listed.stdout.splitlines())
