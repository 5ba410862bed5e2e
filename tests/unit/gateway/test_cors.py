"""CORS per source: preflight answered from the enabled sources' origins, responses carry
Access-Control-Allow-Origin only for an origin the request's source allows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ingest_gateway import create_app
from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.sources import SourceRegistry
from tests.unit.gateway.conftest import source
from trackflow.settings import Settings

SHOP, BLOG, EVIL = "https://shop.example", "https://blog.example", "https://evil.example"


@pytest.fixture
def cors_client(publisher: InMemoryPublisher) -> Iterator[TestClient]:
    sources = SourceRegistry(
        [
            source("shop", allowed_origins=(SHOP,)),
            source("blog", allowed_origins=(BLOG,)),
            source("old", allowed_origins=(EVIL,), enabled=False),
        ]
    )
    app = create_app(Settings(), publisher=publisher, sources=sources)
    with TestClient(app) as c:
        yield c


def preflight(client: TestClient, path: str, origin: str):  # type: ignore[no-untyped-def]
    return client.options(
        path,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )


@pytest.mark.parametrize("path", ["/track", "/v1/t", "/com.snowplowanalytics.snowplow/tp2"])
def test_preflight_from_an_origin_some_enabled_source_allows_is_answered(
    cors_client: TestClient, path: str
) -> None:
    response = preflight(cors_client, path, BLOG)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == BLOG
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["vary"] == "Origin"


def test_preflight_from_other_origins_is_refused(cors_client: TestClient) -> None:
    response = preflight(cors_client, "/track", EVIL)  # only a disabled source allows it
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert "not allowed by any enabled event source" in response.json()["error"]["message"]


def test_a_request_is_allowed_only_from_its_sources_origins(
    cors_client: TestClient, publisher: InMemoryPublisher
) -> None:
    body = {"source": {"id": "shop"}, "events": [{"type": "x"}]}
    ok = cors_client.post("/track", json=body, headers={"origin": SHOP})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == SHOP
    assert ok.headers["access-control-expose-headers"] == "Retry-After"
    other = cors_client.post("/track", json=body, headers={"origin": BLOG})
    assert other.status_code == 403
    assert "origin 'https://blog.example' is not allowed" in other.json()["error"]["message"]
    evil = cors_client.post("/track", json=body, headers={"origin": EVIL})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    assert len(publisher.records) == 1


def test_errors_before_the_source_is_known_are_readable_by_allowed_origins_only(
    cors_client: TestClient,
) -> None:
    bad = cors_client.post("/track", content=b"{", headers={"origin": BLOG})
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == BLOG
    evil = cors_client.post("/track", content=b"{", headers={"origin": EVIL})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers


def test_server_side_requests_get_no_cors_headers(cors_client: TestClient) -> None:
    response = cors_client.post(
        "/track", json={"source": {"id": "shop"}, "events": [{"type": "x"}]}
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
