"""Kafka goes away: the gateway answers 503 with Retry-After, never 2xx, and recovers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.integration.harness import TrackflowProcess, cli, local_services, poll
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import free_port


def test_gateway_answers_503_while_kafka_is_down_and_recovers(tmp_path: Path) -> None:
    with local_services("outage") as (services, broker, _cluster):
        asyncio.run(ensure_topics(services.kafka, partitions=1))
        port = free_port()
        env = {
            "TRACKFLOW_KAFKA_BOOTSTRAP": services.kafka,
            "TRACKFLOW_GATEWAY_PORT": str(port),
            "TRACKFLOW_PUBLISH_TIMEOUT_SECONDS": "2",
            "TRACKFLOW_RETRY_AFTER_SECONDS": "3",
        }
        assert cli("sources", "add", "Site", "--id", "site", env=env).returncode == 0
        gateway = TrackflowProcess("gateway", env, f"http://127.0.0.1:{port}/readyz", tmp_path)
        gateway.start()
        url = f"http://127.0.0.1:{port}"
        body = {"source": {"id": "site"}, "events": [{"type": "page-view"}]}
        try:
            assert httpx.post(f"{url}/track", json=body, timeout=10).status_code == 200

            broker.kill()
            started = time.monotonic()
            response = httpx.post(f"{url}/track", json=body, timeout=30)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "3"
            assert elapsed < 5, f"took {elapsed:.1f}s; the publish timeout is 2s"
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 503 and "kafka unreachable" in ready.json()["reasons"][0]

            broker.start()
            broker.wait_ready()
            poll(
                lambda: httpx.post(f"{url}/track", json=body, timeout=30).status_code == 200,
                60,
                "the gateway to accept events again",
                0.5,
            )
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        finally:
            gateway.stop()
