"""Reading counters from a Prometheus text page, and sampling them while a load runs."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import httpx

__all__ = ["CounterSampler", "Sample", "metric_sum"]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name or not all(w in label_text for w in wanted):
            continue
        with contextlib.suppress(ValueError):
            total += float(value)
    return total


def _read(url: str, name: str, labels: dict[str, str]) -> float | None:
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return metric_sum(response.text, name, **labels)


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the sampler started
    accepted: float  # events the gateway reported acknowledged by Kafka
    stored: float  # events the worker reported stored


@dataclass
class CounterSampler:
    """Samples the gateway's accepted and the worker's stored counters once a second."""

    gateway_metrics: str
    worker_metrics: str
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def read(self) -> tuple[float, float] | None:
        accepted = _read(self.gateway_metrics, "trackflow_gateway_events_accepted_total", {})
        stored = _read(
            self.worker_metrics, "trackflow_stage_events_total", {"stage": "store", "outcome": "ok"}
        )
        if accepted is None or stored is None:
            return None
        return accepted, stored

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append(Sample(time.monotonic() - self._started, *value))
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples
