"""Segment's HTTP tracking API over TestClient: mapping, write keys, limits, partial batches."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.segment import profile_id_for_user
from tests.unit.gateway.conftest import WRITE_KEY, published

BASIC = {"authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def post(client: TestClient, path: str, body: Any, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        path, content=orjson.dumps(body), headers={"content-type": "application/json", **headers}
    )


def test_track_maps_onto_a_raw_event_keeping_segments_fields(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    message = {
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "userId": "u-1",
        "event": "Order Completed",
        "properties": {"total": 12.5},
        "context": {"page": {"url": "https://shop.example/"}, "ip": "203.0.113.9"},
        "integrations": {"All": True},
        "timestamp": "2026-01-02T03:04:00.000Z",
    }
    response = post(client, "/v1/track", message, **BASIC)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "events": ["m-1"], "rejected": []}
    [record] = publisher.records
    assert record.key == b"anon-1"
    [event] = published(publisher)
    assert (event.id, event.type, event.source_id, event.profile_id, event.protocol) == (
        "m-1",
        "Order Completed",
        "shop",
        "anon-1",
        "segment",
    )
    assert event.properties == {"total": 12.5}
    assert event.context["user_id"] == "u-1"
    assert event.context["page"] == {"url": "https://shop.example/"}
    assert event.context["segment"]["integrations"] == {"All": True}
    assert event.context["segment"]["timestamp"] == "2026-01-02T03:04:00.000Z"
    assert event.context["segment"]["type"] == "track"


@pytest.mark.parametrize(
    ("path", "extra", "expected_type"),
    [
        ("/v1/identify", {"traits": {"email": "a@b.example"}}, "identify"),
        ("/v1/i", {"traits": {"email": "a@b.example"}}, "identify"),
        ("/v1/page", {"name": "Home"}, "page"),
        ("/v1/p", {"name": "Home"}, "page"),
        ("/v1/screen", {"name": "Settings"}, "screen"),
        ("/v1/s", {"name": "Settings"}, "screen"),
        ("/v1/group", {"groupId": "g-1", "traits": {"plan": "pro"}}, "group"),
        ("/v1/g", {"groupId": "g-1", "traits": {"plan": "pro"}}, "group"),
        ("/v1/alias", {"previousId": "old-1"}, "alias"),
        ("/v1/a", {"previousId": "old-1"}, "alias"),
        ("/v1/t", {"event": "Clicked"}, "Clicked"),
    ],
)
def test_every_call_and_its_short_form(
    client: TestClient,
    publisher: InMemoryPublisher,
    path: str,
    extra: dict[str, Any],
    expected_type: str,
) -> None:
    body = {"userId": "u-9", "anonymousId": "a-9", "writeKey": WRITE_KEY, **extra}
    response = client.post(path, content=orjson.dumps(body), headers={"content-type": "text/plain"})
    assert response.status_code == 200, response.text
    [event] = published(publisher)
    assert event.type == expected_type and event.context["user_id"] == "u-9"
    if expected_type == "identify":
        assert event.context["traits"] == {"email": "a@b.example"}
    if expected_type == "alias":
        assert event.context["previous_id"] == "old-1"
    if expected_type == "group":
        assert event.context["group"] == {"id": "g-1", "traits": {"plan": "pro"}}
    if expected_type in ("page", "screen"):
        assert event.context["segment"]["name"] in ("Home", "Settings")


def test_identify_traits_join_the_context_traits(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {
        "userId": "u-1",
        "traits": {"email": "new@x.example"},
        "context": {"traits": {"email": "old@x.example", "name": "Ann"}},
    }
    assert post(client, "/v1/identify", body, **BASIC).status_code == 200
    assert published(publisher)[0].context["traits"] == {"email": "new@x.example", "name": "Ann"}


def test_without_anonymous_id_the_profile_is_derived_from_the_user_id_stably(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    for _ in range(2):
        assert post(client, "/v1/track", {"userId": 42, "event": "x"}, **BASIC).status_code == 200
    first, second = published(publisher)
    assert first.profile_id == second.profile_id == profile_id_for_user(42)
    assert first.context["user_id"] == 42


def test_explicit_nulls_are_missing_fields(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {
        "anonymousId": "a-1",
        "userId": None,
        "messageId": None,
        "event": "x",
        "properties": None,
        "context": None,
        "integrations": None,
        "timestamp": None,
    }
    response = post(client, "/v1/track", body, **BASIC)
    assert response.status_code == 200, response.text
    [event] = published(publisher)
    assert event.properties == {} and "user_id" not in event.context


def test_gzip_encoded_batch_is_accepted(client: TestClient, publisher: InMemoryPublisher) -> None:
    body = {"batch": [{"type": "track", "event": "x", "anonymousId": "a"}], "writeKey": WRITE_KEY}
    response = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert [e.type for e in published(publisher)] == ["x"]


def test_corrupt_gzip_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/batch", content=b"\x1f\x8bnot gzip", headers={"content-encoding": "gzip", **BASIC}
    )
    assert response.status_code == 400
    assert "not valid gzip" in response.json()["error"]["message"]


def test_batch_context_and_integrations_are_shared_by_its_messages(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {
        "batch": [
            {"type": "track", "event": "a", "anonymousId": "p", "context": {"locale": "pl-PL"}},
            {"type": "page", "anonymousId": "p"},
        ],
        "context": {"library": {"name": "x"}, "locale": "en-US"},
        "integrations": {"All": False},
    }
    assert post(client, "/v1/batch", body, **BASIC).status_code == 200
    first, second = published(publisher)
    assert first.context["locale"] == "pl-PL" and second.context["locale"] == "en-US"
    assert second.context["library"] == {"name": "x"}
    assert second.context["segment"]["integrations"] == {"All": False}


def test_a_batch_with_bad_messages_accepts_the_good_and_lists_the_bad(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {
        "batch": [
            {"type": "track", "event": "ok", "anonymousId": "a", "messageId": "m-ok"},
            {"type": "track", "anonymousId": "a"},
            {"type": "track", "event": "big", "anonymousId": "a", "properties": {"p": "x" * 33000}},
            {"type": "fly", "anonymousId": "a"},
            {"type": "identify"},
            "not an object",
        ]
    }
    response = post(client, "/v1/batch", body, **BASIC)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["events"] == ["m-ok"]
    rejected = {r["index"]: (r["status"], r["message"]) for r in answer["rejected"]}
    assert rejected[1] == (400, "batch.1.event: required for a track call (the event name)")
    assert rejected[2][0] == 413 and "32 KB" in rejected[2][1]
    assert rejected[3][1].startswith("batch.3.type: Input should be 'track'")
    assert rejected[4][1] == "batch.4.anonymousId or userId: one of them is required"
    assert rejected[5][1].startswith("batch.5: Input should be a valid dictionary")
    assert [e.id for e in published(publisher)] == ["m-ok"]


def test_an_all_bad_batch_is_400_listing_each(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"batch": [{"type": "track"}, {"type": "alias", "userId": "u"}]}
    response = post(client, "/v1/batch", body, **BASIC)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("no event was accepted: batch.0.event: required")
    assert error["details"][1]["message"] == "batch.1.previousId: required for an alias call"
    assert publisher.records == []


def test_a_batch_over_500_kb_is_413(client: TestClient, publisher: InMemoryPublisher) -> None:
    message = {"type": "track", "event": "x", "anonymousId": "a", "properties": {"p": "x" * 30000}}
    response = post(client, "/v1/batch", {"batch": [message] * 18}, **BASIC)
    assert response.status_code == 413
    assert "500 KB" in response.json()["error"]["message"]
    assert publisher.records == []


def test_a_single_message_over_32_kb_is_413(client: TestClient) -> None:
    body = {"event": "x", "anonymousId": "a", "properties": {"p": "x" * 40000}}
    response = post(client, "/v1/track", body, **BASIC)
    assert response.status_code == 413
    assert "32 KB" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "body_key", "status", "needle"),
    [
        ({}, None, 401, "no write key"),
        ({}, "guess", 401, "matches no event source"),
        ({}, "off", 403, "'off' is disabled"),
        ({"origin": "https://evil.example"}, WRITE_KEY, 403, "origin 'https://evil.example'"),
    ],
)
def test_write_key_problems_are_named(
    client: TestClient,
    publisher: InMemoryPublisher,
    headers: dict[str, str],
    body_key: str | None,
    status: int,
    needle: str,
) -> None:
    body = {"event": "x", "anonymousId": "a", "writeKey": body_key}
    response = post(client, "/v1/track", body, **headers)
    assert response.status_code == status
    assert needle in response.json()["error"]["message"]
    assert publisher.records == []


def test_a_source_without_a_write_key_takes_its_id_as_one(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"event": "x", "anonymousId": "a"}
    web = "Basic " + base64.b64encode(b"web:").decode()
    assert post(client, "/v1/track", body, authorization=web).status_code == 200
    assert post(client, "/v1/track", {**body, "writeKey": "shop"}).status_code == 401
    assert [e.source_id for e in published(publisher)] == ["web"]


def test_malformed_json_and_wrong_shape_are_400(client: TestClient) -> None:
    bad = client.post("/v1/batch", content=b"{", headers=BASIC)
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]["message"]
    shape = post(client, "/v1/batch", {"batch": {}}, **BASIC)
    assert shape.status_code == 400
    assert shape.json()["error"]["message"] == "batch: expected a non-empty list of messages"


def test_settings_point_analytics_js_at_the_gateway(client: TestClient) -> None:
    response = client.get(f"/v1/projects/{WRITE_KEY}/settings")
    assert response.status_code == 200
    segment = response.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == WRITE_KEY
    assert segment["apiHost"] == "testserver/v1" and segment["protocol"] == "http"
    assert response.json()["metrics"]["sampleRate"] == 0
    missing = client.get("/v1/projects/nope/settings")
    assert missing.status_code == 404
    assert "no enabled event source" in missing.json()["error"]["message"]
    assert client.get("/v1/projects/off/settings").status_code == 404


def test_more_messages_than_the_per_request_limit_is_400(client: TestClient) -> None:
    message = {"type": "track", "event": "x", "anonymousId": "a"}
    response = post(client, "/v1/batch", {"batch": [message] * 21}, **BASIC)
    assert response.status_code == 400
    assert "at most 20 messages per request (got 21)" in response.json()["error"]["message"]


def test_deflate_is_accepted_and_other_encodings_are_415(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    import zlib

    body = orjson.dumps({"event": "x", "anonymousId": "a", "writeKey": WRITE_KEY})
    deflated = client.post(
        "/v1/t", content=zlib.compress(body), headers={"content-encoding": "deflate"}
    )
    assert deflated.status_code == 200, deflated.text
    brotli = client.post("/v1/t", content=body, headers={"content-encoding": "br"})
    assert brotli.status_code == 415
    assert "content encoding 'br' is not accepted" in brotli.json()["error"]["message"]
    assert len(publisher.records) == 1


def test_a_gzip_body_that_inflates_past_the_limit_is_413(client: TestClient) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 600_000 + b"]}")
    response = client.post("/v1/batch", content=bomb, headers={"content-encoding": "gzip", **BASIC})
    assert response.status_code == 413
    assert "decoded body exceeds the limit of 512000 bytes" in response.json()["error"]["message"]


def test_metrics_count_accepted_and_rejected_items(client: TestClient) -> None:
    body = {"batch": [{"type": "track", "event": "x", "anonymousId": "a"}, {"type": "track"}]}
    assert post(client, "/v1/batch", body, **BASIC).status_code == 200
    text = client.get("/metrics").text
    assert 'trackflow_gateway_events_accepted_total{source="shop"} 1.0' in text
    assert (
        'trackflow_gateway_events_rejected_total{reason="invalid_item",source="shop"} 1.0' in text
    )
    assert 'trackflow_gateway_requests_total{endpoint="/v1/batch",status="200"} 1.0' in text
