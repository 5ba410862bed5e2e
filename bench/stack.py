"""The benchmark's own stack: a Kafka broker, PostgreSQL, the gateway and the worker.

Everything runs on free ports in a fresh temporary state folder (mode 0755, so that the
``postgres`` user can enter it), with the broker's jars linked from the repository's
``.trackflow/`` cache (fetched once, as the test harness does). Gateway and worker are
started as ``python -m trackflow ...`` child processes, like ``trackflow up`` does, and are
ready when their ``/readyz`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import psycopg

from processors.migrate import apply_migrations
from schemas import ConfigRecord, EventSource
from trackflow.config_topic import publish_config
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import (
    KafkaBroker,
    PostgresCluster,
    Tools,
    ensure_prerequisites,
    free_port,
)
from trackflow.settings import Settings

__all__ = ["REPO", "BenchStack", "Service", "cpu_seconds", "rss_bytes"]

REPO = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the kernel SIGTERMs the child when the benchmark dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of one process (VmRSS), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process has used so far, or None when it is gone."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _proc_ppid_and_cmdline(pid: int) -> tuple[int, bytes] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1]), cmdline


def _pids_matching(needle: bytes) -> tuple[list[int], list[int]]:
    """(processes whose command line holds ``needle``, their direct children)."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc_ppid_and_cmdline(int(entry.name))
            if info is not None:
                table[int(entry.name)] = info
    owners = [pid for pid, (_, cmd) in table.items() if needle in cmd and pid != os.getpid()]
    children = [pid for pid, (ppid, _) in table.items() if ppid in owners]
    return owners, children


class Service:
    """``python -m trackflow <args>`` as a child process, ready when ``/readyz`` says so."""

    def __init__(self, name: str, args: Sequence[str], port: int, env: dict[str, str], logs: Path):
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = logs / f"{name}.log"
        self.args = list(args)
        self.python_args: list[str] = []  # e.g. a profiler: ["-m", "pyinstrument", ...]
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 120.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes] = self.log_path.open("ab")
        try:
            argv = [sys.executable, *self.python_args, "-m", "trackflow", *self.args]
            self._proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the {self.name} exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(
            f"the {self.name} was not ready after {timeout:.0f} s: {self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class BenchStack:
    """Broker and database on free ports in a temporary folder; gateway and worker on demand."""

    def __init__(self, progress: Progress, keep: bool = False) -> None:
        self._say = progress
        self._keep = keep
        self.settings = Settings()
        self.tools: Tools = ensure_prerequisites(progress)
        self.state = self._make_state_dir()
        self.logs = self.state / "logs"
        self.broker = KafkaBroker(
            self.tools,
            self.state,
            free_port(),
            free_port(),
            version=self.settings.kafka_version,
            progress=progress,
        )
        self.postgres = PostgresCluster(self.tools, self.state, free_port(), progress=progress)
        self.worker_id = "trackflow-bench"

    def _make_state_dir(self) -> Path:
        version = self.settings.kafka_version
        cache = REPO / ".trackflow"
        KafkaBroker(self.tools, cache, 1, 2, version=version, progress=self._say).fetch()
        path = Path(tempfile.mkdtemp(prefix="trackflow-bench-"))
        path.chmod(0o755)
        (path / f"kafka-{version}").symlink_to(cache / f"kafka-{version}")
        self._say(f"state folder {path}")
        return path

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def start(self) -> None:
        self.broker.start()
        self.postgres.start()
        self.broker.wait_ready()
        self.postgres.wait_ready()
        self._say("applying database migrations")
        apply_migrations(self.database_url)
        self._say("creating topics and registering the benchmark's event source")
        asyncio.run(self._prepare_kafka())

    async def _prepare_kafka(self) -> None:
        from bench.payloads import SOURCE_ID

        await ensure_topics(self.bootstrap, self.settings.topic_partitions)
        source = EventSource(id=SOURCE_ID, name="Benchmark", updated_at=datetime.now(UTC))
        await publish_config(self.bootstrap, ConfigRecord(kind="source", source=source))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TRACKFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "TRACKFLOW_DATABASE_URL": self.database_url,
            "TRACKFLOW_WORKER_ID": self.worker_id,
            "TRACKFLOW_TOPIC_PARTITIONS": str(self.settings.topic_partitions),
            **extra,
        }

    def gateway(self, name: str = "gateway", extra_args: Sequence[str] = ()) -> Service:
        port = free_port()
        env = self.env(TRACKFLOW_GATEWAY_PORT=str(port))
        return Service(name, ["gateway", *extra_args], port, env, self.logs)

    def worker(self) -> Service:
        port = free_port()
        return Service(
            "worker", ["worker"], port, self.env(TRACKFLOW_WORKER_PORT=str(port)), self.logs
        )

    def scratch_database(self, name: str) -> str:
        """A new, migrated database next to the main one; its URL."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.database_url.rpartition("/")[0] + f"/{name}"
        apply_migrations(url)
        return url

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def memory(self) -> dict[str, dict[str, float | int | None]]:
        """RSS (MB) of the broker and of the PostgreSQL server (postmaster and its backends)."""
        broker, _ = _pids_matching(str(self.state / "kafka" / "server.properties").encode())
        pg, backends = _pids_matching(str(self.state / "postgres" / "data").encode())
        pg = [p for p in pg if p not in backends]
        found: dict[str, dict[str, float | int | None]] = {}
        if broker:
            found["kafka_broker"] = {"pid": broker[0], "rss_mb": _mb(rss_bytes(broker[0]))}
        if pg:
            everything = pg + backends
            found["postgresql"] = {
                "pid": pg[0],
                "processes": len(everything),
                "rss_mb": _mb(rss_bytes(pg[0])),
                "rss_sum_mb": _mb(sum(rss_bytes(p) or 0 for p in everything)),
                "pss_sum_mb": _mb(sum(pss_bytes(p) or 0 for p in everything)),
            }
        return found

    def stop(self) -> None:
        self.broker.stop(timeout=30)
        self.postgres.stop(timeout=30)
        if self._keep:
            self._say(f"kept the state folder {self.state}")
        else:
            shutil.rmtree(self.state, ignore_errors=True)


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1_000_000, 1)
