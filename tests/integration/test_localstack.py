"""A real Kafka broker and a real PostgreSQL cluster, started, used, crashed, restarted, stopped."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from tests.integration.procs import pids_using, wait_gone
from trackflow.localstack import (
    KafkaBroker,
    PostgresCluster,
    StackError,
    ensure_prerequisites,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOPIC = "localstack-smoke"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: pytest creates /tmp/pytest-of-<user> with mode 0700, which the
    # `postgres` system user (the server's user when we run as root) cannot enter.
    path = Path(tempfile.mkdtemp(prefix="trackflow-localstack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stack(state_dir: Path) -> Iterator[tuple[KafkaBroker, PostgresCluster]]:
    tools = ensure_prerequisites(print)
    broker = KafkaBroker(tools, state_dir, free_port(), free_port())
    cluster = PostgresCluster(tools, state_dir, free_port())
    try:
        yield broker, cluster
    finally:
        broker.stop(timeout=15)
        cluster.stop(timeout=15)


# -- Kafka client helpers ------------------------------------------------------------------------


async def _broker_ids(bootstrap: str) -> list[tuple[int, str, int]]:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        await client.bootstrap()
        return [(b.nodeId, b.host, b.port) for b in client.cluster.brokers()]
    finally:
        await client.close()


async def _create_and_produce(bootstrap: str, value: bytes) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value)
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str) -> bytes | None:
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=20)
        value: bytes | None = message.value
        return value
    finally:
        await consumer.stop()


def _select_one(url: str) -> tuple[int, str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1, current_database()").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


# -- the test ------------------------------------------------------------------------------------


def test_stack_starts_serves_survives_kill_and_stops(
    stack: tuple[KafkaBroker, PostgresCluster], state_dir: Path
) -> None:
    broker, cluster = stack
    broker.fetch()
    cluster.start()
    broker.start()
    cluster.wait_ready(timeout=60)
    broker.wait_ready(timeout=90)

    port = int(broker.bootstrap.rsplit(":", 1)[1])
    assert asyncio.run(_broker_ids(broker.bootstrap)) == [(1, "127.0.0.1", port)]
    asyncio.run(_create_and_produce(broker.bootstrap, b"hello"))
    assert asyncio.run(_consume_one(broker.bootstrap)) == b"hello"
    assert _select_one(cluster.url) == (1, "trackflow")

    started = pids_using(state_dir)
    assert len(started) >= 2  # java + postmaster (+ postgres helpers)

    # A SIGKILLed broker leaves its data dir behind; starting again must recover it.
    broker.kill()
    assert not broker.running
    broker.start()
    broker.wait_ready(timeout=90)
    assert asyncio.run(_consume_one(broker.bootstrap)) == b"hello"

    # A SIGKILLed postmaster leaves a stale postmaster.pid; postgres must start anyway.
    cluster.kill()
    assert not cluster.running
    assert (state_dir / "postgres" / "data" / "postmaster.pid").exists()
    cluster.start()
    cluster.wait_ready(timeout=60)
    assert _select_one(cluster.url) == (1, "trackflow")

    running = pids_using(state_dir)
    broker.stop()
    cluster.stop()
    assert not broker.running and not cluster.running
    assert wait_gone(started | running) == set()
    broker.stop()  # idempotent
    cluster.stop()


def test_second_broker_on_a_used_port_fails_clearly(
    stack: tuple[KafkaBroker, PostgresCluster], state_dir: Path
) -> None:
    _, cluster = stack
    cluster.start()
    cluster.wait_ready(timeout=60)
    port = int(cluster.url.rsplit(":", 1)[1].split("/")[0])
    tools = ensure_prerequisites(print)
    twin = PostgresCluster(tools, state_dir / "twin", port, progress=lambda _: None)

    with pytest.raises(StackError, match="already in use"):
        twin.start()
