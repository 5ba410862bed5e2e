"""``GET /tracker.js`` over TestClient, and the pure helpers behind it."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest_gateway import create_app
from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.sources import SourceRegistry
from ingest_gateway.tracker import TRACKER_JS, StaticAsset, accepts_gzip, etag_matches
from trackflow.settings import Settings


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings(), publisher=InMemoryPublisher(), sources=SourceRegistry())
    with TestClient(app) as c:
        yield c


def get(client: TestClient, **headers: str):  # type: ignore[no-untyped-def]
    return client.get("/tracker.js", headers={"accept-encoding": "identity", **headers})


def test_serves_the_tracker_as_javascript_with_cache_headers(client: TestClient) -> None:
    response = get(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["etag"].startswith('"') and len(response.headers["etag"]) == 34
    assert "content-encoding" not in response.headers
    assert response.content == TRACKER_JS.read_bytes()


def test_answers_304_without_a_body_when_the_client_has_the_current_etag(
    client: TestClient,
) -> None:
    etag = get(client).headers["etag"]
    for header in (etag, f"W/{etag}", f'"old", {etag}', "*"):
        response = get(client, **{"if-none-match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    assert get(client, **{"if-none-match": '"old"'}).status_code == 200


def test_gzips_for_clients_that_take_it(client: TestClient) -> None:
    raw = client.get("/tracker.js", headers={"accept-encoding": "gzip, br"})
    assert raw.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in raw.headers["vary"]
    assert raw.content == TRACKER_JS.read_bytes()  # httpx decodes it
    assert int(raw.headers["content-length"]) < len(TRACKER_JS.read_bytes()) / 2


def test_the_file_is_read_once_when_the_app_is_created(tmp_path: Path) -> None:
    script = tmp_path / "t.js"
    script.write_bytes(b"var a = 1;")
    asset = StaticAsset.read(script)
    script.write_bytes(b"var a = 2;")
    assert asset.body == b"var a = 1;"
    assert gzip.decompress(asset.gzipped) == b"var a = 1;"
    assert asset.etag != StaticAsset.read(script).etag


def test_the_tracker_is_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/tracker.js"]["get"]
    assert set(operation["responses"]) == {"200", "304"}
    assert "application/javascript" in operation["responses"]["200"]["content"]


def test_the_tracker_stays_small() -> None:
    body = TRACKER_JS.read_bytes()
    assert len(gzip.compress(body, 9)) < 5 * 1024, "tracker.js gzipped should stay under 5 KB"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        (" * ", True),
        ('"abcd"', False),
        ("abc", False),
        (",,,", False),
    ],
)
def test_etag_matches(header: str | None, expected: bool) -> None:
    assert etag_matches(header, '"abc"') is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("*", True),
        ("gzip;q=nonsense", False),
        ("deflate, br", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected
