"""`trackflow up` as a new user runs it: ready line, an event stored, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.harness import REPO, cli, make_state_dir, poll
from tests.integration.procs import descendants, wait_gone
from trackflow.localstack import free_port


class Up:
    def __init__(self, state: Path, ports: dict[str, int]) -> None:
        args = [f"--{name}={port}" for name, port in ports.items()]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trackflow", "up", f"--state-dir={state}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "TRACKFLOW_TOPIC_PARTITIONS": "2"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, text: str, timeout: float) -> None:
        ended = False

        def seen() -> bool:
            nonlocal ended
            while not self._queue.empty():
                line = self._queue.get()
                if line is None:
                    ended = True
                else:
                    self.lines.append(line)
            if any(text in line for line in self.lines):
                return True
            if ended:
                raise AssertionError("trackflow up exited:\n" + "\n".join(self.lines))
            return False

        poll(seen, timeout, f"{text!r} from trackflow up; so far:\n" + "\n".join(self.lines), 0.2)


@pytest.fixture
def state() -> Iterator[Path]:
    path = make_state_dir("up")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_serves_an_event_and_ctrl_c_leaves_no_process(state: Path) -> None:
    ports = {
        name: free_port()
        for name in (
            "gateway-port",
            "worker-port",
            "kafka-port",
            "kafka-controller-port",
            "postgres-port",
        )
    }
    up = Up(state, ports)
    try:
        up.wait_for_line("trackflow ready", 150)
        output = "\n".join(up.lines)
        assert f"gateway:  http://127.0.0.1:{ports['gateway-port']}" in output
        assert f"kafka:    127.0.0.1:{ports['kafka-port']}" in output
        database = f"postgresql://trackflow@127.0.0.1:{ports['postgres-port']}/trackflow"
        assert f"database: {database}" in output
        assert "waiting for Kafka broker" in output  # says what it waits for

        added = cli(
            "sources", "add", "Site", "--id", "site", "--kafka", f"127.0.0.1:{ports['kafka-port']}"
        )
        assert added.returncode == 0, added.stderr
        response = httpx.post(
            f"http://127.0.0.1:{ports['gateway-port']}/track",
            json={"source": {"id": "site"}, "events": [{"type": "page-view"}]},
        )
        assert response.status_code == 200, response.text
        [event_id] = response.json()["events"]

        def stored() -> bool:
            with psycopg.connect(database) as conn:
                return (
                    conn.execute("SELECT 1 FROM events WHERE id = %s", (event_id,)).fetchone()
                    is not None
                )

        poll(stored, 30, "the event row")
        children = descendants(up.proc.pid)
        assert len(children) >= 4  # java, postgres, gateway, worker (+ postgres helpers)
    finally:
        up.proc.send_signal(signal.SIGINT)
        code = up.proc.wait(timeout=90)
    assert code == 0
    assert wait_gone(children, timeout=15) == set()
    up.wait_for_line("trackflow: stopped", 5)


def test_up_names_a_port_already_in_use(state: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {
            "gateway-port": free_port(),
            "worker-port": free_port(),
            "kafka-port": free_port(),
            "kafka-controller-port": free_port(),
            "postgres-port": port,
        }
        up = Up(state, ports)
        code = up.proc.wait(timeout=120)
        up.wait_for_line("trackflow: error:", 5)
    assert code == 1
    assert str(port) in "\n".join(up.lines)
    assert descendants(up.proc.pid) == set()
