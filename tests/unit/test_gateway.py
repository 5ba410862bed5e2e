"""Wiring tests: the gateway's routes over TestClient with an in-memory publisher."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from fastapi.testclient import TestClient

from ingest_gateway import create_app
from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.sources import SourceRegistry
from schemas import EventSource, decode_raw_event
from schemas.topics import EVENTS_RAW
from trackflow.settings import Settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _source(source_id: str, **kw: object) -> EventSource:
    return EventSource(id=source_id, name=source_id, updated_at=NOW, **kw)  # type: ignore[arg-type]


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def client(publisher: InMemoryPublisher) -> Iterator[TestClient]:
    sources = SourceRegistry(
        [
            _source("web"),
            _source("off", enabled=False),
            _source("shop", allowed_origins=("https://shop.example",)),
            _source("slow", rate_limit_per_second=2),
        ]
    )
    counter = itertools.count(1)
    app = create_app(
        Settings(max_body_bytes=4096, max_events_per_request=3, retry_after_seconds=7),
        publisher=publisher,
        sources=sources,
        new_id=lambda: f"id-{next(counter)}",
        clock=lambda: NOW,
    )
    with TestClient(app) as c:
        yield c


def track(client: TestClient, body: object, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/track",
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **headers},
    )


def test_assigns_profile_session_and_event_ids_and_publishes_keyed_by_profile(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    response = track(client, {"source": {"id": "web"}, "events": [{"type": "page-view"}]})
    assert response.status_code == 200
    assert response.json() == {
        "profile": {"id": "id-1"},
        "session": {"id": "id-2"},
        "events": ["id-3"],
        "errors": [],
        "warnings": [],
        "ux": [],
        "response": {},
        "rejected": [],
    }
    [record] = publisher.records
    assert record.topic == EVENTS_RAW
    assert record.key == b"id-1"
    event = decode_raw_event(record.value)
    assert (event.id, event.profile_id, event.session_id, event.type) == (
        "id-3",
        "id-1",
        "id-2",
        "page-view",
    )
    assert event.received_at == NOW and event.protocol == "tracardi"


def test_echoes_ids_sent_by_the_client(client: TestClient, publisher: InMemoryPublisher) -> None:
    response = track(
        client,
        {
            "source": {"id": "web"},
            "profile": {"id": "p-42"},
            "session": {"id": "s-7"},
            "context": {"page": {"url": "https://x"}},
            "unknown": {"ignored": True},
            "events": [
                {
                    "type": "purchase",
                    "id": "e-1",
                    "properties": {"total": 12.5},
                    "tags": ["vip"],
                    "context": {"screen": {"w": 10}},
                }
            ],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["profile"]["id"], body["session"]["id"], body["events"]) == (
        "p-42",
        "s-7",
        ["e-1"],
    )
    event = decode_raw_event(publisher.records[0].value)
    assert event.properties == {"total": 12.5} and event.tags == ["vip"]
    assert event.context == {"page": {"url": "https://x"}, "screen": {"w": 10}}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"events": [{"type": "x"}]}, 422, "source: Field required"),
        ({"source": {"id": "web"}, "events": [{"type": ""}]}, 422, "events.0.type"),
        ({"source": {"id": "web"}, "events": []}, 422, "events: List should have at least 1 item"),
        (
            {"source": {"id": "web"}, "events": [{"type": "x", "properties": []}]},
            422,
            "events.0.properties",
        ),
        ({"source": {"id": "web"}, "events": [{"type": "x"}] * 4}, 422, "at most 3 events"),
        ([1, 2], 422, "expected a JSON object"),
        ({"source": {"id": "nope"}, "events": [{"type": "x"}]}, 401, "'nope' is not a registered"),
        ({"source": {"id": "off"}, "events": [{"type": "x"}]}, 403, "'off' is disabled"),
        (
            {"source": {"id": "web"}, "events": [{"type": "x", "properties": {"a": "\x00"}}]},
            422,
            "NUL",
        ),
    ],
)
def test_rejects_bad_payloads_naming_the_problem(
    client: TestClient, publisher: InMemoryPublisher, body: object, status: int, needle: str
) -> None:
    response = track(client, body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    assert publisher.records == []


def test_names_the_failing_field_in_details(client: TestClient) -> None:
    response = track(client, {"source": {"id": "web"}, "events": [{"type": "x"}], "profile": 5})
    assert response.status_code == 422
    assert {
        "field": "profile",
        "message": "Input should be a valid dictionary or instance of OptionalEntityRef",
    } in response.json()["error"]["details"]


def test_a_batch_with_bad_events_accepts_the_good_ones_and_lists_the_bad_by_index(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"source": {"id": "web"}, "events": [{"type": "x"}, {}, {"type": "y", "tags": 3}]}
    response = track(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["events"]) == 1
    assert [(r["index"], r["status"]) for r in answer["rejected"]] == [(1, 422), (2, 422)]
    assert answer["rejected"][0]["message"] == "events.1.type: Field required"
    assert answer["rejected"][1]["message"].startswith("events.2.tags: ")
    assert answer["errors"] == [r["message"] for r in answer["rejected"]]
    assert [decode_raw_event(r.value).type for r in publisher.records] == ["x"]


def test_a_batch_with_only_bad_events_is_refused_listing_each(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    response = track(client, {"source": {"id": "web"}, "events": [{}, {"type": ""}]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"].startswith("no event was accepted: events.0.type: Field required")
    assert [d["index"] for d in error["details"]] == [0, 1]
    assert publisher.records == []


def test_tracardi_tracker_context_and_options_are_kept(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    context = {
        "browser": {"local": {"browser": {"language": "pl"}, "device": {"platform": "Linux"}}},
        "screen": {"local": {"width": 1920, "height": 1080}},
        "page": {"url": "https://x/a?utm_source=n", "path": "/a", "title": "A", "referer": {}},
        "utm": {"source": "news"},
        "time": {"local": "1/2/2026, 3:04:05 AM", "tz": "Europe/Warsaw"},
        "storage": {"cookies": {}},
    }
    body = {
        "source": {"id": "web"},
        "session": {"id": "s-1"},
        "profile": None,
        "context": context,
        "properties": {},
        "options": {"saveSession": True},
        "metadata": {"time": {"insert": "2026-01-02"}},
        "events": [{"type": "page-view", "options": {"async": False}, "properties": {"a": 1}}],
    }
    response = track(client, body)
    assert response.status_code == 200, response.text
    event = decode_raw_event(publisher.records[0].value)
    assert event.context == context
    assert event.options == {"saveSession": True, "async": False}
    assert response.json()["session"] == {"id": "s-1"}


def test_profile_less_tracking_sends_no_profile_back(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"source": {"id": "web"}, "profile": {"id": "p-1"}, "events": [{"type": "x"}]}
    response = client.post("/track?profile_less=true", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["profile"] is None
    event = decode_raw_event(publisher.records[0].value)
    assert event.profile_id != "p-1" and event.options == {"profile_less": True}


def test_malformed_json_is_400(client: TestClient, publisher: InMemoryPublisher) -> None:
    response = client.post(
        "/track", content=b'{"source":', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]["message"]
    assert publisher.records == []


def test_invalid_utf8_is_400(client: TestClient) -> None:
    response = client.post(
        "/track", content=b'{"source": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]["message"]


def test_body_over_the_limit_is_413(client: TestClient, publisher: InMemoryPublisher) -> None:
    big = {"source": {"id": "web"}, "events": [{"type": "x", "properties": {"pad": "a" * 5000}}]}
    response = track(client, big)
    assert response.status_code == 413
    assert "limit is 4096 bytes" in response.json()["error"]["message"]
    assert publisher.records == []


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"source": {"id": "web"}, "events": [{"type": "x", "properties": {"pad": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}}]}'

    response = client.post("/track", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds the limit of 4096 bytes" in response.json()["error"]["message"]


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post("/track", content=b"<xml/>", headers={"content-type": "application/xml"})
    assert response.status_code == 415
    assert "application/xml" in response.json()["error"]["message"]


def test_text_plain_is_accepted_as_json(client: TestClient) -> None:
    body = orjson.dumps({"source": {"id": "web"}, "events": [{"type": "x"}]})
    response = client.post(
        "/track", content=body, headers={"content-type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 200


def test_origin_not_allowed_for_source_is_403(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"source": {"id": "shop"}, "events": [{"type": "x"}]}
    assert track(client, body, origin="https://evil.example").status_code == 403
    assert track(client, body, origin="https://shop.example").status_code == 200
    assert len(publisher.records) == 1


def test_kafka_not_taking_the_write_is_503_with_retry_after(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    publisher.fail = True
    response = track(client, {"source": {"id": "web"}, "events": [{"type": "x"}]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert "retry later" in response.json()["error"]["message"]


def test_readyz_reports_the_reason(client: TestClient, publisher: InMemoryPublisher) -> None:
    assert client.get("/readyz").status_code == 200
    publisher.fail = True
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["publisher set to fail"]


def test_metrics_count_requests_events_and_rejections(client: TestClient) -> None:
    track(client, {"source": {"id": "web"}, "events": [{"type": "x"}, {"type": "y"}]})
    track(client, {"source": {"id": "nope"}, "events": [{"type": "x"}]})
    client.post("/track", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'trackflow_gateway_events_accepted_total{source="web"} 2.0' in text
    assert (
        'trackflow_gateway_events_rejected_total{reason="unknown_source",source="nope"} 1.0' in text
    )
    assert 'trackflow_gateway_events_rejected_total{reason="bad_request",source=""} 1.0' in text
    assert 'trackflow_gateway_requests_total{endpoint="/track",status="200"} 1.0' in text
    assert 'trackflow_gateway_requests_total{endpoint="/track",status="401"} 1.0' in text
    assert 'trackflow_gateway_request_duration_seconds_count{endpoint="/track"} 3.0' in text
    assert "trackflow_gateway_request_size_bytes_count 3.0" in text
    assert "trackflow_gateway_produce_duration_seconds_count 1.0" in text
    assert "trackflow_gateway_requests_in_flight 1.0" in text  # the scrape itself
    assert "trackflow_gateway_kafka_ready 1.0" in text


def test_rate_limited_source_gets_429_with_retry_after(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"source": {"id": "slow"}, "events": [{"type": "x"}, {"type": "y"}]}
    assert track(client, body).status_code == 200
    response = track(client, body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert "limited to 2 events/s" in response.json()["error"]["message"]
    assert len(publisher.records) == 2


def test_slow_body_times_out_with_408(publisher: InMemoryPublisher) -> None:
    import asyncio

    import httpx

    app = create_app(
        Settings(body_timeout_seconds=0.2),
        publisher=publisher,
        sources=SourceRegistry([_source("web")]),
    )

    async def slow_body():  # type: ignore[no-untyped-def]
        yield b'{"source": {"id": "web"},'
        await asyncio.sleep(1.0)
        yield b' "events": [{"type": "x"}]}'

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            return await c.post(
                "/track", content=slow_body(), headers={"content-type": "application/json"}
            )

    response = asyncio.run(run())
    assert response.status_code == 408
    assert "did not arrive within 0.2s" in response.json()["error"]["message"]
    assert publisher.records == []


def test_write_key_is_required_when_the_source_has_one(publisher: InMemoryPublisher) -> None:
    from schemas.config import hash_write_key

    keyed = EventSource(
        id="keyed", name="keyed", updated_at=NOW, write_key_sha256=hash_write_key("s3cret")
    )
    app = create_app(Settings(), publisher=publisher, sources=SourceRegistry([keyed]))
    body = {"source": {"id": "keyed"}, "events": [{"type": "x"}]}
    with TestClient(app) as c:
        missing = track(c, body)
        assert (
            missing.status_code == 401
            and "needs its write key" in missing.json()["error"]["message"]
        )
        wrong = track(c, body, **{"x-write-key": "guess"})
        assert wrong.status_code == 401 and "does not match" in wrong.json()["error"]["message"]
        assert track(c, body, **{"x-write-key": "s3cret"}).status_code == 200
        basic = "Basic " + __import__("base64").b64encode(b"s3cret:").decode()
        assert track(c, body, authorization=basic).status_code == 200
        assert track(c, body, authorization="Basic !!notbase64").status_code == 401
    assert len(publisher.records) == 2
