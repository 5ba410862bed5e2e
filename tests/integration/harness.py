"""Starting the real services the integration tests need, and trackflow's own processes.

Order of preference for Kafka and PostgreSQL:
1. ``TRACKFLOW_TEST_KAFKA`` and ``TRACKFLOW_TEST_DATABASE_URL``: services you already run;
2. testcontainers, where a Docker engine answers;
3. otherwise a real broker and cluster from :mod:`trackflow.localstack`, on free ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from trackflow.localstack import (
    ChildProcess,
    KafkaBroker,
    PostgresCluster,
    ensure_prerequisites,
    free_port,
)
from trackflow.settings import Settings

__all__ = [
    "REPO",
    "Services",
    "TrackflowProcess",
    "cli",
    "local_services",
    "make_state_dir",
    "poll",
    "services_from_env_or_docker",
]

REPO = Path(__file__).resolve().parents[2]
KAFKA_VERSION = Settings().kafka_version


@dataclass(frozen=True)
class Services:
    kafka: str
    database_url: str


def poll(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Return the first truthy result of ``check``; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _shared_kafka_libs() -> Path:
    """Fetch the broker jars once into the repo's state folder; test stacks link to them."""
    cache = REPO / ".trackflow"
    KafkaBroker(
        ensure_prerequisites(print), cache, 1, 2, version=KAFKA_VERSION
    ).fetch()  # ports unused
    return cache / f"kafka-{KAFKA_VERSION}"


def make_state_dir(prefix: str) -> Path:
    """A state folder the ``postgres`` user can enter (pytest's tmp_path is mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f"trackflow-{prefix}-"))
    path.chmod(0o755)
    (path / f"kafka-{KAFKA_VERSION}").symlink_to(_shared_kafka_libs())
    return path


@contextmanager
def local_services(prefix: str = "test") -> Iterator[tuple[Services, KafkaBroker, PostgresCluster]]:
    state = make_state_dir(prefix)
    tools = ensure_prerequisites(print)
    broker = KafkaBroker(tools, state, free_port(), free_port(), version=KAFKA_VERSION)
    cluster = PostgresCluster(tools, state, free_port())
    try:
        broker.start()
        cluster.start()
        broker.wait_ready()
        cluster.wait_ready()
        yield Services(broker.bootstrap, cluster.url), broker, cluster
    finally:
        broker.stop(timeout=20)
        cluster.stop(timeout=20)
        shutil.rmtree(state, ignore_errors=True)


def _docker_works() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def _containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        PostgresContainer("postgres:15", driver=None) as pg,
    ):
        yield Services(kafka.get_bootstrap_server(), pg.get_connection_url())


@contextmanager
def services_from_env_or_docker() -> Iterator[Services | None]:
    """Services given by env or containers; None when the local stack should be used."""
    kafka = os.environ.get("TRACKFLOW_TEST_KAFKA")
    database = os.environ.get("TRACKFLOW_TEST_DATABASE_URL")
    if kafka and database:
        yield Services(kafka, database)
    elif _docker_works():
        with _containers() as services:
            yield services
    else:
        yield None


def fresh_database(admin_url: str, name: str) -> str:
    """Create (or re-create) a database next to ``admin_url``'s and return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


class TrackflowProcess:
    """``trackflow gateway`` or ``trackflow worker`` as a real child process."""

    def __init__(
        self,
        command: str,
        env: dict[str, str],
        ready_url: str,
        logs: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.command = command
        self._args = extra_args
        self.ready_url = ready_url
        self.log_path = logs / f"{command}.log"
        self._env = {**os.environ, **env}
        self._child = ChildProcess(command, self.log_path)

    def start(self, timeout: float = 60) -> None:
        self._child.spawn(
            [sys.executable, "-m", "trackflow", self.command, *self._args],
            cwd=REPO,
            death_signal=signal.SIGTERM,
            env=self._env,
        )
        poll(
            self._ready, timeout, f"{self.command} at {self.ready_url} (log: {self.log_path})", 0.2
        )

    def _ready(self) -> bool:
        if not self._child.running:
            raise AssertionError(f"{self.command} exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(self.ready_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self._child.stop(signal.SIGTERM, timeout=20)

    def kill(self) -> None:
        self._child.kill()
