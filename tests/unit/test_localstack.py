"""Pure tests of trackflow.localstack: generated files, ids, ports, error messages. No processes."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from trackflow import localstack
from trackflow.localstack import KafkaBroker, PostgresCluster, StackError, Tools, free_port

FAKE_TOOLS = Tools(
    java=Path("/nonexistent/java"),
    mvn=Path("/nonexistent/mvn"),
    pg_bin=Path("/nonexistent/postgresql/15/bin"),
)


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_server_properties_has_listeners_ports_and_small_footprint(tmp_path: Path) -> None:
    props = _properties(localstack._server_properties(19092, 19093, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["log.cleaner.dedupe.buffer.size"] == "33554432"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert "auto.create.topics.enable" not in props  # left at the broker default


def test_broker_writes_config_under_state_dir(tmp_path: Path) -> None:
    broker = KafkaBroker(FAKE_TOOLS, tmp_path, 19092, 19093, progress=lambda _: None)

    config = broker._write_config()

    assert config == tmp_path / "kafka" / "server.properties"
    assert _properties(config.read_text())["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert (tmp_path / "kafka" / "data").is_dir()
    assert broker.bootstrap == "127.0.0.1:19092"
    assert broker.log_path == tmp_path / "kafka" / "kafka.log"
    assert not broker.running
    broker.stop()  # never started: no-op
    broker.kill()


def test_cluster_id_format() -> None:
    for _ in range(200):
        cluster_id = localstack._new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_regenerated_when_it_would_start_with_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([b"\xf8" + bytes(15), bytes(16)])  # the first encodes to "-AAA..."
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(draws))

    assert localstack._new_cluster_id() == "A" * 22


def test_cluster_id_is_persisted_once(tmp_path: Path) -> None:
    path = tmp_path / "kafka" / "cluster-id"

    first = localstack._cluster_id(path)

    assert path.read_text().strip() == first
    assert localstack._cluster_id(path) == first
    path.write_text("garbage\n")
    replaced = localstack._cluster_id(path)
    assert replaced != "garbage" and len(replaced) == 22
    assert path.read_text().strip() == replaced


def test_pom_is_a_pom_packaging_with_kafka_and_slf4j_simple() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(localstack._pom_xml("4.1.1"))

    assert root.findtext("m:packaging", namespaces=ns) == "pom"
    deps = {
        (d.findtext("m:groupId", namespaces=ns), d.findtext("m:artifactId", namespaces=ns)): (
            d.findtext("m:version", namespaces=ns)
        )
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }
    assert deps == {
        ("org.apache.kafka", "kafka_2.13"): "4.1.1",
        ("org.slf4j", "slf4j-simple"): "1.7.36",
    }


def test_free_port_returns_distinct_bindable_ports() -> None:
    ports = [free_port() for _ in range(20)]

    assert len(set(ports)) == len(ports)
    for port in ports[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="invalid Kafka version"):
        KafkaBroker(FAKE_TOOLS, tmp_path, 1, 2, version="4.1.1</version>")
    with pytest.raises(StackError, match="must differ"):
        KafkaBroker(FAKE_TOOLS, tmp_path, 5, 5)
    with pytest.raises(StackError, match="invalid PostgreSQL database"):
        PostgresCluster(FAKE_TOOLS, tmp_path, 5432, database="x; drop")


def test_postgres_url_and_paths(tmp_path: Path) -> None:
    cluster = PostgresCluster(FAKE_TOOLS, tmp_path, 55432, database="tf", user="me")

    assert cluster.url == "postgresql://me@127.0.0.1:55432/tf"
    assert cluster.log_path == tmp_path / "postgres" / "postgres.log"
    assert not cluster.running
    cluster.stop()  # never started: no-op


def test_long_state_dir_disables_the_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    assert PostgresCluster(FAKE_TOOLS, tmp_path, 55432)._socket_dir == (
        tmp_path / "postgres" / "run"
    )
    assert PostgresCluster(FAKE_TOOLS, deep, 55432)._socket_dir is None
    assert "unix_socket_directories=" in localstack._postgres_settings(55432, None)


def test_missing_tools_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(localstack, "_PG_ROOT", Path("/nonexistent/postgresql"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(StackError) as info:
        localstack.ensure_prerequisites(lambda _: None)

    message = str(info.value)
    for package in ("default-jdk-headless", "maven", "postgresql"):
        assert package in message


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_state_dir_the_postgres_user_cannot_enter_is_reported(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    cluster = PostgresCluster(FAKE_TOOLS, hidden / "state", free_port(), progress=lambda _: None)

    with pytest.raises(StackError, match="TRACKFLOW_STATE_DIR") as info:
        cluster.start()

    # pytest's own base temp dir is mode 0700, so that is usually the one named.
    named = [d for d in (hidden, *hidden.parents) if f"cannot enter {d} " in str(info.value)]
    assert named, info.value
    assert not (hidden / "state").exists()


def test_log_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    tail = localstack._log_tail(log, 3)

    assert tail == "line 97\nline 98\nline 99"
    assert "unreadable" in localstack._log_tail(tmp_path / "missing.log")


def test_run_coroutine_works_inside_and_outside_an_event_loop() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def from_inside_a_loop() -> int:
        return localstack._run_coroutine(answer)

    assert localstack._run_coroutine(answer) == 42
    assert asyncio.run(from_inside_a_loop()) == 42
