"""`trackflow gateway --inline`: stages and the PostgreSQL write inside the request."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg

from tests.integration.conftest import Pipeline
from tests.integration.harness import TrackflowProcess, poll
from trackflow.localstack import free_port


def test_inline_gateway_stores_before_answering(pipeline: Pipeline, tmp_path: Path) -> None:
    def mirrored() -> bool:  # the worker mirrors the config topic into the sources table
        with psycopg.connect(pipeline.database_url) as conn:
            row = conn.execute("SELECT enabled FROM sources WHERE id = %s", (pipeline.source_id,))
            return row.fetchone() == (True,)

    poll(mirrored, 30, "the test source in the sources table")
    port = free_port()
    env = {
        **pipeline.env,
        "TRACKFLOW_GATEWAY_PORT": str(port),
        "TRACKFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    }
    inline = TrackflowProcess(
        "gateway", env, f"http://127.0.0.1:{port}/readyz", tmp_path, extra_args=("--inline",)
    )
    inline.start()
    try:
        event_id = f"inline-{uuid.uuid4()}"
        response = httpx.post(
            f"http://127.0.0.1:{port}/track",
            timeout=10,
            json={
                "source": {"id": pipeline.source_id},
                "events": [{"type": "page-view", "id": event_id}],
            },
        )
        assert response.status_code == 200, response.text
        with psycopg.connect(pipeline.database_url) as conn:  # no polling: it is already there
            row = conn.execute(
                "SELECT type, kafka_partition FROM events WHERE id = %s", (event_id,)
            )
            assert row.fetchone() == ("page-view", -1)
        unknown = httpx.post(
            f"http://127.0.0.1:{port}/track",
            timeout=10,
            json={"source": {"id": "nope"}, "events": [{"type": "x"}]},
        )
        assert unknown.status_code == 401
    finally:
        inline.stop()
