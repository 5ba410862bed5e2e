"""Run a real single-node Kafka broker and a real PostgreSQL cluster as child processes.

Used by ``trackflow up`` and by the pytest harness (which starts both on free ports in a
temporary directory). No Docker: the broker is Apache Kafka (KRaft, combined
broker+controller) fetched from Maven Central with ``mvn`` and run with ``java``; the database
is the Debian PostgreSQL server binaries run directly on a project-local data directory.

Layout under ``state_dir``::

    kafka-<version>/pom.xml, libs/*.jar   the broker's jars (fetched once)
    kafka/server.properties, cluster-id   broker config; kafka/data is the log dir
    kafka/kafka.log                       broker stdout+stderr (appended)
    postgres/data                         the cluster (initdb once)
    postgres/run                          unix socket directory
    postgres/postgres.log                 server stdout+stderr (appended)

Every child runs in its own session (a terminal Ctrl-C does not reach it; the owner stops
children in order) and, on Linux, asks the kernel to signal it when its parent dies, so a
SIGKILLed owner does not leave a broker or a database behind.

Readiness is checked with real client requests (a Kafka metadata request, a PostgreSQL
connection), never just an open port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import psycopg
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from psycopg import sql

__all__ = [
    "ChildProcess",
    "KafkaBroker",
    "PostgresCluster",
    "StackError",
    "Tools",
    "ensure_prerequisites",
    "free_port",
]

Progress = Callable[[str], None]
_T = TypeVar("_T")

_LOOPBACK = "127.0.0.1"
_PG_ROOT = Path("/usr/lib/postgresql")
_PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
_PG_SYSTEM_USER = "postgres"
_SLF4J_SIMPLE_VERSION = "1.7.36"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([.-][0-9A-Za-z]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_LOG_TAIL_LINES = 30
_PR_SET_PDEATHSIG = 1

_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


class StackError(Exception):
    """Starting or stopping the local stack failed; the message says what and how to fix it."""


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the external programs the local stack needs."""

    java: Path
    mvn: Path
    pg_bin: Path  # directory holding initdb, pg_ctl, postgres, pg_isready


# --------------------------------------------------------------------------------------------
# small shared helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now.

    Ports handed out earlier by this process are never returned again, so several calls in a
    row give distinct ports even though each probe socket is closed before returning.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((_LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        with _ports_lock:
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise StackError("could not find a free TCP port on 127.0.0.1 after 100 attempts")


def _port_is_free(port: int) -> bool:
    """True when a listener could bind 127.0.0.1:port (SO_REUSEADDR, as Kafka and postgres do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _require_free_port(port: int, what: str, setting: str) -> None:
    if not _port_is_free(port):
        raise StackError(
            f"cannot start {what}: 127.0.0.1:{port} is already in use (another instance still "
            f"running?). Stop whatever listens there or choose another port with {setting}."
        )


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note saying it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read()
    except OSError as exc:
        return f"(log {path} unreadable: {exc.strerror})"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(log is empty)"


def _failure(what: str, log_path: Path, hint: str = "") -> StackError:
    message = f"{what}. {hint}".rstrip(" ") + (
        f"\nLog file: {log_path}\n--- last {_LOG_TAIL_LINES} lines ---\n{_log_tail(log_path)}"
    )
    return StackError(message)


def _open_log(path: Path, title: str) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("ab")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    fh.write(f"\n===== trackflow: {title} at {stamp} =====\n".encode())
    fh.flush()
    return fh


def _die_with_parent_preexec(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn asking the kernel to send ``sig`` to the child when its parent dies.

    Runs in the child after fork (and after subprocess's uid/gid switch, so the setting is
    not cleared by the credential change). If the parent already died during the fork, exit.
    """
    parent = os.getpid()
    # Resolve prctl before fork: loading libraries in the forked child could deadlock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class ChildProcess:
    """One supervised child process with its log file (also used for gateway and worker)."""

    def __init__(self, name: str, log_path: Path) -> None:
        self._name = name
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        death_signal: signal.Signals,
        user: pwd.struct_passwd | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        log = _open_log(self._log_path, f"starting {self._name}: {' '.join(argv)}")
        try:
            self._proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                preexec_fn=_die_with_parent_preexec(death_signal),
                **_user_kwargs(user),
            )
        except OSError as exc:
            raise StackError(f"could not run {argv[0]} for {self._name}: {exc}") from exc
        finally:
            log.close()

    def stop(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        proc.wait()

    def kill(self) -> None:
        """SIGKILL the child and its direct children (PostgreSQL backends), wait for all."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            orphans = _children_of(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            _kill_and_wait(orphans, timeout=10.0)
        proc.wait()


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a live process from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    return fields[0], int(fields[1]), int(fields[19])


def _children_of(pid: int) -> dict[int, int]:
    """Direct children of ``pid`` as {child pid: start time} (Linux /proc; empty elsewhere)."""
    children: dict[int, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if entry.name.isdigit():
            info = _proc_stat(int(entry.name))
            if info is not None and info[1] == pid:
                children[int(entry.name)] = info[2]
    return children


def _kill_and_wait(processes: dict[int, int], timeout: float) -> None:
    """SIGKILL each {pid: start time} that is still the same process; wait until all are gone."""
    deadline = time.monotonic() + timeout
    pending = dict(processes)
    while pending and time.monotonic() < deadline:
        for pid, started in list(pending.items()):
            info = _proc_stat(pid)
            if info is None or info[2] != started or info[0] in ("Z", "X"):
                del pending[pid]
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if pending:
            time.sleep(0.05)


def _user_kwargs(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": groups}


def _poll_until(deadline: float, check: Callable[[], bool], alive: Callable[[], None]) -> bool:
    """Call ``check`` with short backoff until it is true or ``deadline`` passes.

    ``alive`` raises when the process being waited for has died.
    """
    delay = 0.1
    while True:
        alive()
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 1.0)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``asyncio.run`` that also works when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(factory()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="trackflow-localstack-probe")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


# --------------------------------------------------------------------------------------------
# prerequisites
# --------------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", path.name)) or (-1,)


def _find_pg_bin() -> Path | None:
    if not _PG_ROOT.is_dir():
        return None
    candidates = [
        d / "bin"
        for d in _PG_ROOT.iterdir()
        if all((d / "bin" / tool).is_file() for tool in _PG_TOOLS)
    ]
    return max(candidates, key=lambda b: _version_key(b.parent), default=None)


def _find_which(program: str) -> Path | None:
    found = shutil.which(program)
    return Path(found).absolute() if found else None


def _find_tools() -> dict[str, Path | None]:
    return {"java": _find_which("java"), "mvn": _find_which("mvn"), "pg_bin": _find_pg_bin()}


_PACKAGES = {
    "java": ("default-jdk-headless", "java not found on PATH"),
    "mvn": ("maven", "mvn not found on PATH"),
    "pg_bin": ("postgresql", f"no {_PG_ROOT}/<version>/bin with {', '.join(_PG_TOOLS)}"),
}


def _can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_get(args: Sequence[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(
        ["apt-get", *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(
            (result.stdout + result.stderr).decode(errors="replace").splitlines()[-30:]
        )
        raise StackError(f"`apt-get {' '.join(args)}` failed (exit {result.returncode}):\n{tail}")


def ensure_prerequisites(progress: Progress) -> Tools:
    """Find java, mvn and the PostgreSQL server binaries, installing missing ones if possible.

    Missing programs are installed with apt-get when running as root on Debian/Ubuntu;
    otherwise ``StackError`` names the Debian package to install.
    """
    found = _find_tools()
    missing = [key for key, path in found.items() if path is None]
    if missing and not _can_install():
        needs = "; ".join(
            f"{_PACKAGES[k][1]}: install Debian package {_PACKAGES[k][0]}" for k in missing
        )
        packages = " ".join(_PACKAGES[k][0] for k in missing)
        raise StackError(
            f"missing prerequisites ({needs}). Run as root: "
            f"apt-get install -y --no-install-recommends {packages}"
        )
    if missing:
        progress("updating the Debian package index (apt-get update)...")
        _apt_get(["update"])
    for key in missing:
        package, reason = _PACKAGES[key]
        progress(f"installing Debian package {package} ({reason})...")
        _apt_get(["install", "-y", "--no-install-recommends", package])
    if missing:
        found = _find_tools()
        still = [k for k, path in found.items() if path is None]
        if still:
            raise StackError(
                "still missing after apt-get install: "
                + "; ".join(f"{_PACKAGES[k][1]} (package {_PACKAGES[k][0]})" for k in still)
            )
    java, mvn, pg_bin = found["java"], found["mvn"], found["pg_bin"]
    assert java is not None and mvn is not None and pg_bin is not None
    return Tools(java=java, mvn=mvn, pg_bin=pg_bin)


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


def _pom_xml(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by trackflow.localstack: the runtime closure of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.trackflow</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>{_SLF4J_SIMPLE_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    lines = [
        "# Generated by trackflow.localstack: single-node KRaft broker+controller on loopback.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{_LOOPBACK}:{controller_port}",
        f"listeners=PLAINTEXT://{_LOOPBACK}:{port},CONTROLLER://{_LOOPBACK}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{_LOOPBACK}:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "# The default 128 MiB is allocated when the log cleaner starts and crashes a small heap.",
        "log.cleaner.dedupe.buffer.size=33554432",
        "num.network.threads=2",
        "num.io.threads=2",
        "# A SIGKILLed broker can only re-register once its old session expires (default 9 s).",
        "broker.heartbeat.interval.ms=500",
        "broker.session.timeout.ms=4000",
    ]
    return "\n".join(lines) + "\n"


def _new_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id(path: Path) -> str:
    """The cluster id stored at ``path``, generated and stored on first use."""
    if path.is_file():
        stored = path.read_text().strip()
        if len(stored) == 22 and not stored.startswith("-"):
            return stored
    cluster_id = _new_cluster_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cluster_id + "\n")
    return cluster_id


async def _kafka_broker_ids(bootstrap: str, timeout: float) -> list[int]:
    """Node ids listed by one metadata request to ``bootstrap`` (empty if it fails)."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(timeout * 1000)),
        retry_backoff_ms=100,
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return sorted(int(b.nodeId) for b in client.cluster.brokers())
    except (TimeoutError, KafkaError, OSError):
        return []
    finally:
        await client.close()


class KafkaBroker:
    """A single-node Apache Kafka (KRaft) broker+controller run from Maven Central jars."""

    def __init__(
        self,
        tools: Tools,
        state_dir: Path,
        port: int,
        controller_port: int,
        version: str = "4.1.1",
        heap: str = "512m",
        progress: Progress = print,
    ) -> None:
        if not _VERSION_RE.match(version):
            raise StackError(f"invalid Kafka version {version!r} (expected e.g. 4.1.1)")
        if port == controller_port:
            raise StackError(f"Kafka port and controller port must differ (both {port})")
        self._tools = tools
        self._state_dir = Path(state_dir).absolute()
        self._port = port
        self._controller_port = controller_port
        self._version = version
        self._heap = heap
        self._progress = progress
        self._child = ChildProcess("Kafka broker", self.log_path)

    # -- paths -------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{_LOOPBACK}:{self._port}"

    @property
    def log_path(self) -> Path:
        return self._state_dir / "kafka" / "kafka.log"

    @property
    def running(self) -> bool:
        return self._child.running

    @property
    def _dist_dir(self) -> Path:
        return self._state_dir / f"kafka-{self._version}"

    @property
    def _libs(self) -> Path:
        return self._dist_dir / "libs"

    @property
    def _conf_dir(self) -> Path:
        return self._state_dir / "kafka"

    @property
    def _data_dir(self) -> Path:
        return self._conf_dir / "data"

    # -- fetch -------------------------------------------------------------------------------
    def _fetched(self) -> bool:
        return (self._libs / f"kafka_2.13-{self._version}.jar").is_file()

    def fetch(self) -> None:
        """Copy the broker's runtime jars into ``state_dir/kafka-<version>/libs`` (once)."""
        if self._fetched():
            return
        self._progress(f"fetching Apache Kafka {self._version} jars with Maven (first run only)...")
        self._dist_dir.mkdir(parents=True, exist_ok=True)
        (self._dist_dir / "pom.xml").write_text(_pom_xml(self._version))
        partial = self._dist_dir / f"libs.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        argv = [
            str(self._tools.mvn), "-q", "-B", "-Dstyle.color=never", _DEPENDENCY_PLUGIN,
            f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
        ]  # fmt: skip
        result = subprocess.run(
            argv, cwd=self._dist_dir, stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if result.returncode != 0 or not (partial / f"kafka_2.13-{self._version}.jar").is_file():
            shutil.rmtree(partial, ignore_errors=True)
            output = (result.stdout + result.stderr).decode(errors="replace").splitlines()
            raise StackError(
                f"fetching Kafka {self._version} with Maven failed (exit {result.returncode}). "
                "Maven needs to reach Maven Central (check network/proxy settings in "
                "~/.m2/settings.xml) and the version must exist (4.0.0 or later). "
                f"Command: {' '.join(argv)} (in {self._dist_dir})\n--- mvn output ---\n"
                + "\n".join(output[-_LOG_TAIL_LINES:])
            )
        shutil.rmtree(self._libs, ignore_errors=True)
        try:
            partial.rename(self._libs)
        except OSError:
            if not self._fetched():  # someone else won a concurrent fetch: fine
                raise
            shutil.rmtree(partial, ignore_errors=True)

    # -- start -------------------------------------------------------------------------------
    def _write_config(self) -> Path:
        self._conf_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        config = self._conf_dir / "server.properties"
        config.write_text(_server_properties(self._port, self._controller_port, self._data_dir))
        return config

    def _java(self, heap: str, *args: str) -> list[str]:
        return [
            str(self._tools.java), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
            "-cp", f"{self._libs}/*", *args,
        ]  # fmt: skip

    def _format_storage(self, config: Path) -> None:
        if (self._data_dir / "meta.properties").is_file():
            return  # formatted earlier; the broker recovers whatever a crash left behind
        cluster_id = _cluster_id(self._conf_dir / "cluster-id")
        argv = self._java(
            "256m", "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(config), "--ignore-formatted",
        )  # fmt: skip
        log = _open_log(self.log_path, "formatting Kafka storage")
        try:
            result = subprocess.run(
                argv, cwd=self._conf_dir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        finally:
            log.close()
        if result.returncode != 0:
            raise _failure(
                f"formatting Kafka storage in {self._data_dir} failed (exit {result.returncode})",
                self.log_path,
                f"If the data dir belongs to another cluster id, delete {self._conf_dir}.",
            )

    def start(self) -> None:
        """Write the config, format storage if new, and spawn the broker (no-op if running)."""
        if self.running:
            return
        if not self._fetched():
            self.fetch()
        _require_free_port(self._port, "the Kafka broker", "TRACKFLOW_KAFKA_PORT")
        _require_free_port(
            self._controller_port, "the Kafka controller", "TRACKFLOW_KAFKA_CONTROLLER_PORT"
        )
        config = self._write_config()
        self._format_storage(config)
        self._progress(f"starting Kafka {self._version} broker on {self.bootstrap}...")
        self._child.spawn(
            self._java(self._heap, "kafka.Kafka", str(config)),
            cwd=self._conf_dir,
            death_signal=signal.SIGTERM,
        )

    def _check_alive(self) -> None:
        if not self.running:
            code = self._child.returncode
            raise _failure(
                f"the Kafka broker is not running (exit code {code})",
                self.log_path,
                "Look for the cause (port in use, bad config, Java version < 17) in the log.",
            )

    def _metadata_ok(self, timeout: float) -> bool:
        if not _port_open(self._port):
            return False  # skip the client (and its error logging) until the port opens
        return bool(_run_coroutine(lambda: _kafka_broker_ids(self.bootstrap, timeout)))

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until a Kafka metadata request to the broker lists a broker."""
        self._progress(f"waiting for Kafka broker on {self.bootstrap} ...")
        started = time.monotonic()
        deadline = started + timeout
        ok = _poll_until(
            deadline,
            lambda: self._metadata_ok(min(5.0, max(1.0, deadline - time.monotonic()))),
            self._check_alive,
        )
        if not ok:
            raise _failure(
                f"the Kafka broker on {self.bootstrap} did not answer a metadata request "
                f"within {timeout:.0f} s",
                self.log_path,
            )
        self._progress(
            f"Kafka broker ready on {self.bootstrap} ({time.monotonic() - started:.1f} s)"
        )

    # -- stop --------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout``. Idempotent."""
        self._child.stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the broker now and wait for it to exit."""
        self._child.kill()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    """True if ``user`` may search directory ``path`` (mode bits only; ACLs are ignored)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _untraversable_parent(directory: Path, user: pwd.struct_passwd) -> Path | None:
    """The first of ``directory`` and its parents that ``user`` cannot search, if any."""
    resolved = directory.resolve()
    for path in [*reversed(resolved.parents), resolved]:
        if not _can_traverse(path, user):
            return path
    return None


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    def entries() -> Iterator[Path]:
        yield root
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                yield Path(dirpath) / name

    for path in entries():
        st = path.lstat()
        if st.st_uid != user.pw_uid or st.st_gid != user.pw_gid:
            os.lchown(path, user.pw_uid, user.pw_gid)


def _postgres_settings(port: int, socket_dir: Path | None) -> list[str]:
    settings = {
        "listen_addresses": _LOOPBACK,
        "unix_socket_directories": "" if socket_dir is None else str(socket_dir),
        "shared_buffers": "128MB",
        "max_connections": "100",
        "fsync": "on",
        "logging_collector": "off",
        "log_destination": "stderr",
    }
    argv = ["-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


class PostgresCluster:
    """A PostgreSQL cluster in ``state_dir/postgres/data``, run by the server binary directly."""

    def __init__(
        self,
        tools: Tools,
        state_dir: Path,
        port: int,
        database: str = "trackflow",
        user: str = "trackflow",
        progress: Progress = print,
    ) -> None:
        for label, name in (("database", database), ("user", user)):
            if not _NAME_RE.match(name):
                raise StackError(f"invalid PostgreSQL {label} name {name!r} (use [A-Za-z0-9_])")
        self._tools = tools
        self._state_dir = Path(state_dir).absolute()
        self._port = port
        self._database = database
        self._user = user
        self._progress = progress
        self._child = ChildProcess("PostgreSQL", self.log_path)

    @property
    def url(self) -> str:
        return (
            f"postgresql://{quote(self._user, safe='')}@{_LOOPBACK}:{self._port}"
            f"/{quote(self._database, safe='')}"
        )

    @property
    def log_path(self) -> Path:
        return self._root / "postgres.log"

    @property
    def running(self) -> bool:
        return self._child.running

    @property
    def _root(self) -> Path:
        return self._state_dir / "postgres"

    @property
    def _data_dir(self) -> Path:
        return self._root / "data"

    @property
    def _socket_dir(self) -> Path | None:
        """The unix socket dir, or None when its path would be too long for a socket."""
        run = self._root / "run"
        socket_file = f"{run}/.s.PGSQL.{self._port}"
        return run if len(socket_file.encode()) <= _SOCKET_PATH_MAX else None

    def _bin(self, tool: str) -> str:
        return str(self._tools.pg_bin / tool)

    # -- start -------------------------------------------------------------------------------
    def _system_user(self) -> pwd.struct_passwd | None:
        """The user to run the server as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            account = pwd.getpwnam(_PG_SYSTEM_USER)
        except KeyError:
            raise StackError(
                "PostgreSQL refuses to run as root and there is no `postgres` system user to run "
                "it as; install the Debian package postgresql (it creates that user)."
            ) from None
        blocked = _untraversable_parent(self._state_dir, account)
        if blocked is not None:
            raise StackError(
                f"the PostgreSQL server runs as the `{_PG_SYSTEM_USER}` user (it refuses to run "
                f"as root), but that user cannot enter {blocked} (mode "
                f"{stat.filemode(blocked.stat().st_mode)}, owner "
                f"{_owner_name(blocked)}). Point TRACKFLOW_STATE_DIR at a directory whose "
                f"parents are all searchable by others (e.g. under /tmp or /var/tmp), or run "
                f"`chmod o+x {blocked}`."
            )
        return account

    def _prepare_dirs(self, account: pwd.struct_passwd | None) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        socket_dir = self._socket_dir
        if socket_dir is not None:
            socket_dir.mkdir(exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if account is not None:
            _chown_tree(self._root, account)

    def _check_data_version(self) -> None:
        version = (self._data_dir / "PG_VERSION").read_text().strip()
        ours = self._tools.pg_bin.parent.name
        if ours.isdigit() and version != ours:
            raise StackError(
                f"{self._data_dir} was created by PostgreSQL {version} but the server binaries "
                f"in {self._tools.pg_bin} are version {ours}. Install the matching Debian package "
                f"postgresql-{version}, or delete {self._data_dir} to start over (data is lost)."
            )

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        if (self._data_dir / "PG_VERSION").is_file():
            self._check_data_version()
            return
        if self._data_dir.exists() and any(self._data_dir.iterdir()):
            raise StackError(
                f"{self._data_dir} is not empty but holds no cluster (an interrupted initdb?). "
                "Delete it and run again."
            )
        self._progress(f"creating PostgreSQL cluster in {self._data_dir} (first run only)...")
        argv = [
            self._bin("initdb"), "-D", str(self._data_dir), "-U", self._user,
            "--auth=trust", "-E", "UTF8", "--no-locale",
        ]  # fmt: skip
        log = _open_log(self.log_path, "initdb")
        try:
            result = subprocess.run(
                argv, cwd=self._root, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, check=False, **_user_kwargs(account),
            )  # fmt: skip
        finally:
            log.close()
        if result.returncode != 0:
            raise _failure(f"initdb failed (exit {result.returncode})", self.log_path)

    def start(self) -> None:
        """initdb once, then spawn the ``postgres`` server (no-op if running)."""
        if self.running:
            return
        _require_free_port(self._port, "PostgreSQL", "TRACKFLOW_POSTGRES_PORT")
        account = self._system_user()
        self._prepare_dirs(account)
        self._initdb(account)
        self._progress(f"starting PostgreSQL on {_LOOPBACK}:{self._port}...")
        argv = [
            self._bin("postgres"), "-D", str(self._data_dir),
            *_postgres_settings(self._port, self._socket_dir),
        ]  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients to disconnect.
        self._child.spawn(argv, cwd=self._root, death_signal=signal.SIGINT, user=account)

    def _check_alive(self) -> None:
        if not self.running:
            raise _failure(
                f"the PostgreSQL server is not running (exit code {self._child.returncode})",
                self.log_path,
                "Look for the cause (port in use, permissions, shared memory) in the log.",
            )

    def _connect(self, dbname: str, timeout: float) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=_LOOPBACK,
            port=self._port,
            user=self._user,
            dbname=dbname,
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
        )

    def _can_connect(self) -> bool:
        try:
            with self._connect("postgres", 2.0) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        with self._connect("postgres", 5.0) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self._database,)
            ).fetchone()
            if exists is not None:
                return
            self._progress(f"creating database {self._database}...")
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._database)))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server accepts connections, then create the database if missing."""
        self._progress(f"waiting for PostgreSQL on {_LOOPBACK}:{self._port} ...")
        started = time.monotonic()
        if not _poll_until(started + timeout, self._can_connect, self._check_alive):
            raise _failure(
                f"PostgreSQL on {_LOOPBACK}:{self._port} did not accept connections "
                f"within {timeout:.0f} s",
                self.log_path,
            )
        self._create_database()
        self._progress(
            f"PostgreSQL ready on {_LOOPBACK}:{self._port} ({time.monotonic() - started:.1f} s)"
        )

    # -- stop --------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (fast shutdown), then SIGKILL after ``timeout``. Idempotent."""
        self._child.stop(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster now and wait for it to exit."""
        self._child.kill()


def _owner_name(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
