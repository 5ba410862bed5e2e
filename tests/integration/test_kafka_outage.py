"""Kafka goes away: the gateway answers 503 with Retry-After, never 2xx; readiness of the
gateway and the worker turns false, and everything recovers by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from processors.migrate import apply_migrations
from tests.integration.harness import TrackflowProcess, cli, local_services, poll
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import free_port


def _status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def test_kafka_outage_gives_503_and_unready_then_recovers(tmp_path: Path) -> None:
    with local_services("outage") as (services, broker, _cluster):
        asyncio.run(ensure_topics(services.kafka, partitions=1))
        apply_migrations(services.database_url)
        port, worker_port = free_port(), free_port()
        env = {
            "TRACKFLOW_KAFKA_BOOTSTRAP": services.kafka,
            "TRACKFLOW_DATABASE_URL": services.database_url,
            "TRACKFLOW_GATEWAY_PORT": str(port),
            "TRACKFLOW_WORKER_PORT": str(worker_port),
            "TRACKFLOW_PUBLISH_TIMEOUT_SECONDS": "2",
            "TRACKFLOW_RETRY_AFTER_SECONDS": "3",
        }
        assert cli("sources", "add", "Site", "--id", "site", env=env).returncode == 0
        gateway_ready = f"http://127.0.0.1:{port}/readyz"
        worker_ready = f"http://127.0.0.1:{worker_port}/readyz"
        gateway = TrackflowProcess("gateway", env, gateway_ready, tmp_path)
        worker = TrackflowProcess("worker", env, worker_ready, tmp_path)
        gateway.start()
        worker.start()
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
            ready = httpx.get(gateway_ready, timeout=10)
            assert ready.status_code == 503 and "kafka unreachable" in ready.json()["reasons"][0]
            poll(lambda: _status(worker_ready) == 503, 30, "the worker to report not ready")
            assert any("kafka unreachable" in r for r in httpx.get(worker_ready).json()["reasons"])

            broker.start()
            broker.wait_ready()
            poll(
                lambda: httpx.post(f"{url}/track", json=body, timeout=30).status_code == 200,
                60,
                "the gateway to accept events again",
                0.5,
            )
            assert _status(gateway_ready) == 200
            poll(lambda: _status(worker_ready) == 200, 60, "the worker to be ready again", 0.5)
        finally:
            gateway.stop()
            worker.stop()
