"""Webhook-style /collect/{event_type}/{source_id}: query or body become the properties."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ingest_gateway.publisher import InMemoryPublisher
from tests.unit.gateway.conftest import published


def test_get_query_becomes_the_properties_of_a_profile_less_event(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    response = client.get("/collect/payment-received/web", params={"amount": "10", "cur": "EUR"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["profile"] is None and len(answer["events"]) == 1
    [event] = published(publisher)
    assert (event.type, event.source_id, event.protocol) == ("payment-received", "web", "collect")
    assert event.properties == {"amount": "10", "cur": "EUR"}
    assert event.options == {"profile_less": True}


def test_post_json_or_form_body_becomes_the_properties(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    assert client.post("/collect/hook/web", json={"a": {"b": 1}}).status_code == 200
    form = client.post(
        "/collect/hook/web",
        content=b"x=1&y=two",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200
    assert client.post("/collect/hook/web").status_code == 200
    assert [e.properties for e in published(publisher)] == [
        {"a": {"b": 1}},
        {"x": "1", "y": "two"},
        {},
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("GET", "/collect/x/nope", None, 401, "'nope' is not a registered"),
        ("GET", "/collect/x/off", None, 403, "'off' is disabled"),
        ("GET", "/collect/" + "t" * 200 + "/web", None, 422, "event_type: String should have"),
        ("POST", "/collect/x/web", b"[1]", 422, "expected a JSON object, got list"),
        ("POST", "/collect/x/web", b"{", 400, "malformed JSON"),
    ],
)
def test_problems_are_named(
    client: TestClient,
    publisher: InMemoryPublisher,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    needle: str,
) -> None:
    response = client.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert needle in response.json()["error"]["message"]
    assert publisher.records == []
