"""Enrichment end to end: geo, device, campaign and referrer on the stored event, the
profile's last known geo and device, the session's first; the IP anonymised before storage."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from tests.integration.conftest import Pipeline
from tests.integration.harness import poll

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


def _post(p: Pipeline, profile: str, session: str, ip: str, ua: str, url: str) -> str:
    response = httpx.post(
        f"{p.gateway_url}/track",
        json={
            "source": {"id": p.source_id},
            "profile": {"id": profile},
            "session": {"id": session},
            "context": {"page": {"url": url, "referer": "https://www.google.com/search?q=x"}},
            "events": [{"type": "page-view"}],
        },
        headers={"x-forwarded-for": ip, "user-agent": ua, "accept-language": "en-GB,en;q=0.8"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    event_id: str = response.json()["events"][0]
    return event_id


def _one(p: Pipeline, sql: str, *params: object) -> Any:
    with psycopg.connect(p.database_url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        return row


def test_enriched_fields_on_event_profile_and_session(pipeline: Pipeline) -> None:
    profile, session = f"enrich-{uuid.uuid4()}", f"s-{uuid.uuid4()}"
    first = _post(
        pipeline,
        profile,
        session,
        "81.2.69.142",
        CHROME_MAC,
        "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring&gclid=abc",
    )
    row = poll(
        lambda: _one(
            pipeline, "SELECT enrichment, request->>'ip' FROM events WHERE id = %s", first
        ),
        30,
        "the first enriched event",
    )
    enrichment, stored_ip = row  # type: ignore[misc]
    assert enrichment["geo"]["country_code"] == "GB"
    assert enrichment["geo"]["city"] == "London"
    assert enrichment["device"]["browser"] == "Chrome" and enrichment["device"]["is_pc"] is True
    assert enrichment["campaign"]["source"] == "news" and enrichment["campaign"]["name"] == "spring"
    assert enrichment["campaign"]["network"] == "google"
    assert enrichment["referrer"]["host"] == "www.google.com"
    assert enrichment["referrer"]["medium"] == "search"
    assert enrichment["language"].lower().startswith("en")
    assert stored_ip == "81.2.69.0", "the IP is anonymised before it is stored"

    second = _post(pipeline, profile, session, "216.160.83.56", IPHONE, "https://shop.example/cart")
    poll(lambda: _one(pipeline, "SELECT 1 FROM events WHERE id = %s", second), 30, "second event")
    geo, device = _one(pipeline, "SELECT geo, device FROM profiles WHERE id = %s", profile)
    assert geo["city"] == "Milton" and device["is_mobile"] is True, "profile keeps the last known"
    geo, device = _one(pipeline, "SELECT geo, device FROM sessions WHERE id = %s", session)
    assert geo["city"] == "London" and device["browser"] == "Chrome", "session keeps its first"


def test_private_and_unparsable_addresses_give_no_geo_and_no_error(pipeline: Pipeline) -> None:
    profile = f"private-{uuid.uuid4()}"
    event_id = _post(pipeline, profile, f"s-{uuid.uuid4()}", "10.1.2.3", "curl/8.0", "not a url")
    enrichment = poll(
        lambda: _one(pipeline, "SELECT enrichment FROM events WHERE id = %s", event_id),
        30,
        "the event with a private IP",
    )[0]  # type: ignore[index]
    assert "geo" not in enrichment
    assert not enrichment.get("warnings")
