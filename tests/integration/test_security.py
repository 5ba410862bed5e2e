"""Abuse at the gateway: SQL-looking values are stored verbatim; no admin surface."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.integration.conftest import Pipeline
from tests.integration.harness import poll

SQL = [
    "'; DROP TABLE events; --",
    "1' OR '1'='1",
    'x"); DELETE FROM profiles; --',
    "$$; TRUNCATE sessions; $$",
    "\\'; SELECT pg_sleep(10); --",
]


def test_sql_looking_values_are_stored_verbatim(pipeline: Pipeline) -> None:
    marker = uuid.uuid4().hex[:8]
    profile_id, session_id, event_id = (
        f"{s} {marker}-{k}" for k, s in zip("pse", SQL, strict=False)
    )
    body = {
        "source": {"id": pipeline.source_id},
        "profile": {"id": profile_id},
        "session": {"id": session_id},
        "context": {SQL[3]: SQL[4]},
        "events": [
            {
                "id": event_id,
                "type": SQL[1],
                "properties": {SQL[0]: SQL[2], "nested": {"k": SQL}},
                "tags": SQL,
                "options": {"o": SQL[0]},
            }
        ],
    }
    response = httpx.post(
        f"{pipeline.gateway_url}/track",
        json=body,
        timeout=10,
        headers={"user-agent": SQL[0], "referer": SQL[1]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["profile"]["id"] == profile_id

    def row() -> tuple[object, ...] | None:
        with psycopg.connect(pipeline.database_url) as conn:
            return conn.execute(
                "SELECT profile_id, session_id, type, properties, context, tags, options,"
                " request->>'user_agent', request->>'referer' FROM events WHERE id = %s",
                (event_id,),
            ).fetchone()

    stored = poll(row, 30, "the SQL-looking event")
    assert stored == (
        profile_id,
        session_id,
        SQL[1],
        {SQL[0]: SQL[2], "nested": {"k": SQL}},
        {SQL[3]: SQL[4]},
        SQL,
        {"o": SQL[0]},
        SQL[0],
        SQL[1],
    )
    with psycopg.connect(pipeline.database_url) as conn:
        for table in ("events", "profiles", "sessions"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # type: ignore[index]
        assert conn.execute("SELECT 1 FROM profiles WHERE id = %s", (profile_id,)).fetchone()


@pytest.mark.parametrize("path", ["/sources", "/rules", "/admin", "/config", "/migrate", "/topics"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_no_admin_operation_is_reachable_through_the_gateway(
    pipeline: Pipeline, path: str, method: str
) -> None:
    response = httpx.request(method, f"{pipeline.gateway_url}{path}", json={"id": "x"}, timeout=10)
    assert response.status_code in (404, 405)


SEGMENT = {f"/v1/{name}" for name in ("batch", "track", "identify", "page", "screen", "group",
                                        "alias", "b", "t", "i", "p", "s", "g", "a")}  # fmt: skip
PUBLIC = {
    "/track",
    "/collect/{event_type}/{source_id}",
    *SEGMENT,
    "/v1/projects/{write_key}/settings",
    "/com.snowplowanalytics.snowplow/tp2",
    "/i",
    "/tracker.js",
    "/healthz",
    "/readyz",
    "/metrics",
}


def test_the_gateway_routes_are_only_the_public_ones(pipeline: Pipeline) -> None:
    spec = httpx.get(f"{pipeline.gateway_url}/openapi.json", timeout=10).json()
    assert set(spec["paths"]) <= PUBLIC, set(spec["paths"]) - PUBLIC
    assert {"/track", "/v1/batch", "/i"} <= set(spec["paths"])


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/v1/batch", "/i", "/collect/x/test-site", "/v1/projects/k/settings"]
)
def test_the_public_routes_take_only_their_methods(
    pipeline: Pipeline, path: str, method: str
) -> None:
    response = httpx.request(method, f"{pipeline.gateway_url}{path}", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["message"]
