"""``trackflow up``: the whole local stack in the foreground, stopped cleanly on Ctrl-C.

Order of start: Kafka broker and PostgreSQL (in parallel), migrations, topics, worker,
gateway; each step waits until the part is really ready and says what it waits for.
Order of stop: the reverse. Every child runs in its own session and dies with us.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import (
    ChildProcess,
    KafkaBroker,
    PostgresCluster,
    StackError,
    ensure_prerequisites,
)
from trackflow.settings import Settings

__all__ = ["StackFailed", "run_stack"]


class StackFailed(Exception):
    pass


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def _say(message: str) -> None:
    print(f"trackflow: {message}", flush=True)


class Service:
    """A trackflow process (gateway or worker) with an HTTP readiness endpoint."""

    def __init__(self, name: str, command: str, ready_url: str, env: dict[str, str], logs: Path):
        self.name = name
        self.ready_url = ready_url
        self.log_path = logs / f"{name}.log"
        self._command = command
        self._env = env
        self._child = ChildProcess(name, self.log_path)

    def start(self) -> None:
        self._child.spawn(
            [sys.executable, "-m", "trackflow", self._command],
            cwd=Path.cwd(),
            death_signal=signal.SIGTERM,
            env=self._env,
        )

    @property
    def running(self) -> bool:
        return self._child.running

    def wait_ready(self, timeout: float = 90.0) -> None:
        _say(f"waiting for the {self.name} to be ready ({self.ready_url})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise StackFailed(
                    f"the {self.name} exited with code {self._child.returncode};"
                    f" see {self.log_path}"
                )
            try:
                if httpx.get(self.ready_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackFailed(
            f"the {self.name} was not ready after {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        self._child.stop(signal.SIGTERM, timeout=20.0)


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        state = settings.state_dir.resolve()
        self.logs = state / "logs"
        tools = ensure_prerequisites(_say)
        self.broker = KafkaBroker(
            tools,
            state,
            settings.kafka_port,
            settings.kafka_controller_port,
            version=settings.kafka_version,
            progress=_say,
        )
        self.postgres = PostgresCluster(tools, state, settings.postgres_port, progress=_say)
        env = self._child_env()
        self.worker = Service(
            "worker",
            "worker",
            f"http://{settings.worker_host}:{settings.worker_port}/readyz",
            env,
            self.logs,
        )
        self.gateway = Service(
            "gateway",
            "gateway",
            f"http://{settings.gateway_host}:{settings.gateway_port}/readyz",
            env,
            self.logs,
        )
        self._stops: list[Callable[[], None]] = []

    def _child_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "TRACKFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{s.kafka_port}",
            "TRACKFLOW_DATABASE_URL": f"postgresql://trackflow@127.0.0.1:{s.postgres_port}/trackflow",
            "TRACKFLOW_GATEWAY_HOST": s.gateway_host,
            "TRACKFLOW_GATEWAY_PORT": str(s.gateway_port),
            "TRACKFLOW_WORKER_HOST": s.worker_host,
            "TRACKFLOW_WORKER_PORT": str(s.worker_port),
            "TRACKFLOW_TOPIC_PARTITIONS": str(s.topic_partitions),
        }

    def start(self) -> None:
        self.broker.fetch()
        self._stops.append(self.broker.stop)
        self.broker.start()
        self._stops.append(self.postgres.stop)
        self.postgres.start()
        self.broker.wait_ready()
        self.postgres.wait_ready()
        self._prepare()
        for service in (self.worker, self.gateway):
            self._stops.append(service.stop)
            service.start()
            service.wait_ready()

    def _prepare(self) -> None:
        from processors.migrate import apply_migrations

        _say("applying database migrations")
        applied = apply_migrations(self.postgres.url)
        _say(f"database schema up to date ({len(applied)} migrations applied now)")
        _say("creating Kafka topics")
        created = asyncio.run(ensure_topics(self.broker.bootstrap, self.settings.topic_partitions))
        _say(f"topics ready ({len(created)} created now)")

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()

    def watch(self) -> int:
        """Block until a signal (exit 0) or until a child dies (exit 1)."""
        while True:
            for name, alive in (
                ("gateway", self.gateway.running),
                ("worker", self.worker.running),
                ("Kafka broker", self.broker.running),
                ("PostgreSQL", self.postgres.running),
            ):
                if not alive:
                    _say(f"the {name} stopped unexpectedly; stopping the stack (logs: {self.logs})")
                    return 1
            time.sleep(0.5)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_stack(settings: Settings) -> int:
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stack: LocalStack | None = None
    try:
        stack = LocalStack(settings)
        stack.start()
        s = settings
        print(f"gateway:  http://{s.gateway_host}:{s.gateway_port}", flush=True)
        print(f"kafka:    {stack.broker.bootstrap}", flush=True)
        print(f"database: {stack.postgres.url}", flush=True)
        print(f"logs:     {stack.logs}", flush=True)
        print("trackflow ready", flush=True)
        return stack.watch()
    except _Stop as stop:
        _say(f"{stop} received; stopping")
        return 0
    except StackError as exc:
        raise StackFailed(str(exc)) from None
    finally:
        _shutdown(stack, previous)


def _shutdown(stack: LocalStack | None, previous: dict[signal.Signals, Any]) -> None:
    # A second Ctrl-C during shutdown must not leave children behind: ignore it.
    for s in previous:
        signal.signal(s, signal.SIG_IGN)
    if stack is not None:
        stack.stop()
        _say("stopped")
    for s, handler in previous.items():
        signal.signal(s, handler)
