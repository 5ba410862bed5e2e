"""The OpenAPI document covers every route, with request bodies and error responses."""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

INGEST_POSTS = [
    "/track",
    "/v1/batch",
    "/v1/b",
    *(f"/v1/{k}" for k in ("track", "identify", "page", "screen", "group", "alias")),
    *(f"/v1/{k}" for k in "tipsga"),
    "/com.snowplowanalytics.snowplow/tp2",
]


def test_every_route_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    routes = {r.path for r in client.app.routes if isinstance(r, APIRoute)}  # type: ignore[attr-defined]
    assert routes <= set(document["paths"]), routes - set(document["paths"])
    assert {
        "/collect/{event_type}/{source_id}",
        "/i",
        "/v1/projects/{write_key}/settings",
    } <= routes


def test_ingest_routes_have_a_body_and_error_responses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path in INGEST_POSTS:
        operation = document["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in schemas, (path, ref)
        assert {"400", "401", "413", "503"} <= set(operation["responses"]), path
    assert "events" in schemas["TrackPayload"]["properties"]
    assert "batch" in schemas["SegmentBatch"]["properties"]
    assert document["paths"]["/i"]["get"]["parameters"][1]["name"] == "aid"
