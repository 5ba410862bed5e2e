"""Session fixtures: a real Kafka broker and PostgreSQL, and trackflow's gateway and worker."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from processors.migrate import apply_migrations
from tests.integration.harness import (
    Services,
    TrackflowProcess,
    cli,
    fresh_database,
    local_services,
    services_from_env_or_docker,
)
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import free_port

MAXMIND = Path(__file__).resolve().parents[1] / "data" / "maxmind"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with services_from_env_or_docker() as given:
        if given is not None:
            yield given
            return
        with local_services() as (local, _broker, _cluster):
            yield local


@dataclass(frozen=True)
class Pipeline:
    kafka: str
    database_url: str
    gateway_url: str
    worker_url: str
    source_id: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def pipeline(services: Services) -> Iterator[Pipeline]:
    """Migrated database, topics, one worker and one gateway, and a registered source."""
    database_url = fresh_database(services.database_url, "trackflow_e2e")
    apply_migrations(database_url)
    asyncio.run(ensure_topics(services.kafka, partitions=3))
    gateway_port, worker_port = free_port(), free_port()
    env = {
        "TRACKFLOW_KAFKA_BOOTSTRAP": services.kafka,
        "TRACKFLOW_DATABASE_URL": database_url,
        "TRACKFLOW_GATEWAY_PORT": str(gateway_port),
        "TRACKFLOW_WORKER_PORT": str(worker_port),
        "TRACKFLOW_STORE_BATCH_SECONDS": "0.05",
        "TRACKFLOW_WORKER_ID": "trackflow-e2e",
        "TRACKFLOW_TRUSTED_PROXIES": "127.0.0.1",
        "TRACKFLOW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",  # the metrics test's webhook receiver
        "TRACKFLOW_GEOIP_CITY_DB": str(MAXMIND / "GeoIP2-City-Test.mmdb"),
        "TRACKFLOW_GEOIP_ASN_DB": str(MAXMIND / "GeoLite2-ASN-Test.mmdb"),
    }
    added = cli("sources", "add", "Test site", "--id", "test-site", env=env)
    assert added.returncode == 0, added.stderr
    logs = Path(tempfile.mkdtemp(prefix="trackflow-e2e-logs-"))
    worker = TrackflowProcess("worker", env, f"http://127.0.0.1:{worker_port}/readyz", logs)
    gateway = TrackflowProcess("gateway", env, f"http://127.0.0.1:{gateway_port}/readyz", logs)
    worker.start()
    gateway.start()
    try:
        yield Pipeline(
            services.kafka,
            database_url,
            f"http://127.0.0.1:{gateway_port}",
            f"http://127.0.0.1:{worker_port}",
            "test-site",
            env,
        )
    finally:
        gateway.stop()
        worker.stop()
        shutil.rmtree(logs, ignore_errors=True)
