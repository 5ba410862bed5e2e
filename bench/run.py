"""One benchmark run: every measurement, each next to its ceiling, in one go.

Order (each step says what it does as it goes):

1. bring up Kafka and PostgreSQL on free ports in a temporary folder; build the load
   generator (``bench/loadgen``, Go);
2. ceilings: the raw Kafka producer (the gateway's own publisher, no HTTP) and raw
   PostgreSQL COPY, and the store stage alone (``PostgresStore.write_events``);
3. gateway and worker up; single-event requests at fixed offered rates (open loop): HTTP
   latency, and receipt-to-row latency from the rows (``stored_at - received_at``);
4. end to end: the most the pipeline takes (closed loop, 20-event requests), then a
   sustained open-loop run just below it, with the lag sampled every second;
5. the worker stopped, the gateway alone at its maximum (closed loop), single events and
   20-event batches;
6. ``trackflow gateway --inline`` the same way, when the command has that option;
7. resident memory of every process after its load.

A step that crashes is recorded and makes the run exit non-zero; missed targets do not.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.loadgen import build_loadgen, run_loadgen
from bench.machine import describe_machine, load_average
from bench.metrics import CounterSampler, Sample
from bench.micro import copy_throughput, producer_throughput, store_throughput
from bench.payloads import write_bodies
from bench.stack import REPO, BenchStack, Service, cpu_seconds, rss_bytes

__all__ = ["FULL", "SMOKE", "Scale", "run_benchmark"]

MB = 1_000_000


@dataclass(frozen=True)
class Scale:
    name: str
    micro_seconds: float  # each ceiling measurement
    rates: tuple[int, ...]  # offered single-event requests/s
    rate_seconds: float
    warmup_seconds: float
    max_seconds: float  # each closed-loop maximum
    connections: int  # closed-loop clients
    probe_seconds: float  # end to end at maximum
    sustain_seconds: float  # end to end just below it
    drain_timeout: float
    e2e_latency_events: int  # events/s offered for the receipt-to-row latency run


FULL = Scale("full", 8, (100, 500, 1000, 2000), 15, 3, 10, 64, 15, 20, 120, 1000)
SMOKE = Scale("smoke", 1, (20, 50), 2, 1, 2, 8, 3, 3, 45, 100)
OPEN_LOOP_IN_FLIGHT = 512
BATCH = 20


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"bench [{time.monotonic() - _STARTED:5.0f} s] {message}", flush=True)


def _http_summary(run: dict[str, Any], events_per_request: int) -> dict[str, Any]:
    keys = (
        "mode", "offered_rate", "connections", "elapsed_seconds", "scheduled", "unsent",
        "requests", "ok",
    )  # fmt: skip
    summary = {k: run[k] for k in keys}
    summary["requests_per_s"] = round(run["ok_throughput"], 1)
    summary["events_per_s"] = round(run["ok_throughput"] * events_per_request, 1)
    summary["latency_ms"] = {k: round(v, 2) for k, v in run["latency_ms"].items()}
    summary["statuses"] = run["statuses"]
    summary["errors"] = run["errors"]
    if run["mode"] == "open-loop":
        summary["send_lag_max_ms"] = round(run["send_lag_max_ms"], 2)
    return summary


def _rss_mb(pid: int | None) -> float | None:
    value = rss_bytes(pid) if pid is not None else None
    return None if value is None else round(value / MB, 1)


class StepFailed(Exception):
    """A measurement could not be made (not a missed target): the run exits non-zero."""


class Benchmark:
    def __init__(self, scale: Scale, keep: bool) -> None:
        self.scale = scale
        self.keep = keep
        self.results: dict[str, Any] = {"mode": scale.name, "errors": []}
        self.stack: BenchStack | None = None
        self.loadgen: Path | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def step(self, name: str, action: Callable[[], None]) -> bool:
        say(f"== {name}")
        started = time.monotonic()
        try:
            action()
        except Exception as exc:
            say(f"!! step '{name}' failed: {exc!r}")
            self.results["errors"].append(
                {"step": name, "error": repr(exc), "traceback": traceback.format_exc()[-4000:]}
            )
            return False
        say(f"   ({time.monotonic() - started:.0f} s)")
        return True

    @property
    def _stack(self) -> BenchStack:
        assert self.stack is not None
        return self.stack

    def _bodies(self, tag: str, events: int) -> Path:
        return write_bodies(self._stack.state / "bodies" / f"{tag}.jsonl", events, tag)

    def _load(self, gateway: Service, tag: str, events: int, **kwargs: Any) -> dict[str, Any]:
        """One load run against ``gateway``, with the CPU time the gateway spent on it."""
        assert self.loadgen is not None
        bodies = self._bodies(tag, events)
        cpu_before = cpu_seconds(gateway.pid)
        run = run_loadgen(self.loadgen, f"{gateway.url}/track", bodies, **kwargs)
        cpu_after = cpu_seconds(gateway.pid)
        if run["ok"] == 0:
            raise StepFailed(f"no 2xx answer in run {tag}: {run['statuses']} {run['errors']}")
        summary = _http_summary(run, events)
        if cpu_before is not None and cpu_after is not None:
            used = cpu_after - cpu_before
            summary["gateway_cpu_seconds"] = round(used, 2)
            summary["gateway_cpu_share_of_a_core"] = round(used / run["elapsed_seconds"], 2)
            summary["gateway_cpu_ms_per_request"] = round(1000 * used / max(1, run["requests"]), 3)
        return summary

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self._stack.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def _tagged_rows(self, tag: str) -> int:
        query = "SELECT count(*) FROM events WHERE properties->>'bench_run' = %s"
        return int(self._query(query, tag)[0][0])

    def _wait_rows(self, tag: str, expected: int) -> tuple[int, float]:
        started = time.monotonic()
        found = self._tagged_rows(tag)
        while found < expected and time.monotonic() - started < self.scale.drain_timeout:
            time.sleep(0.5)
            found = self._tagged_rows(tag)
        return found, time.monotonic() - started

    def _receipt_to_row(self, tag: str, expected: int) -> dict[str, Any]:
        found, waited = self._wait_rows(tag, expected)
        [(p50, p99, worst)] = self._query(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)"
            " FROM (SELECT extract(epoch FROM stored_at - received_at) * 1000 AS lag"
            "       FROM events WHERE properties->>'bench_run' = %s) AS t",
            tag,
        )
        return {
            "events_acknowledged": expected,
            "rows_found": found,
            "all_stored": found >= expected,
            "waited_for_rows_s": round(waited, 1),
            "latency_ms": {
                "p50": None if p50 is None else round(float(p50), 1),
                "p99": None if p99 is None else round(float(p99), 1),
                "max": None if worst is None else round(float(worst), 1),
            },
        }

    # -- steps ---------------------------------------------------------------------------------
    def setup(self) -> None:
        self.loadgen = build_loadgen(say)
        self.stack = BenchStack(say, keep=self.keep)
        self.results["machine"] = describe_machine(
            REPO, self.stack.settings.kafka_version, self.stack.tools.pg_bin
        )
        self.stack.start()

    def ceilings_kafka(self) -> None:
        s = self._stack.settings
        say(
            "raw producer (the gateway's KafkaPublisher, no HTTP),"
            f" {self.scale.micro_seconds:g} s x 3"
        )
        result = asyncio.run(
            producer_throughput(
                self._stack.bootstrap,
                s.topic_partitions,
                s.publish_timeout_seconds,
                self.scale.micro_seconds,
            )
        )
        self.results["producer"] = result
        say(
            f"producer: pipelined {result['pipelined']['events_per_s']:,} events/s; "
            f"publish(1) x64 {result['publish_1']['events_per_s']:,} events/s; "
            f"publish(20) x64 {result['publish_20']['events_per_s']:,} events/s"
        )

    def ceilings_postgres(self) -> None:
        batch = self._stack.settings.store_batch_size
        name = "trackflow_bench_store"
        url = self._stack.scratch_database(name)
        try:
            say(f"raw COPY of store rows, batches of {batch}, {self.scale.micro_seconds:g} s")
            copy = asyncio.run(copy_throughput(url, batch, self.scale.micro_seconds))
            say(f"COPY: {copy['rows_per_s']:,} rows/s")
            say(f"store stage alone (PostgresStore.write_events), batches of {batch}")
            store = asyncio.run(store_throughput(url, batch, self.scale.micro_seconds))
            say(f"store: {store['rows_per_s']:,} rows/s")
        finally:
            self._stack.drop_database(name)
        self.results["postgres"] = {"copy": copy, "store": store}

    def start_pipeline(self) -> None:
        self.worker = self._stack.worker()
        say("starting the worker (trackflow worker)")
        self.worker.start()
        self.gateway = self._stack.gateway()
        say("starting the gateway (trackflow gateway)")
        self.gateway.start()
        self._warm_up(self.gateway, "warmup")

    def _warm_up(self, gateway: Service, tag: str) -> None:
        say(f"warm-up: {self.scale.warmup_seconds:g} s of single events at maximum")
        run = self._load(
            gateway,
            tag,
            1,
            duration=self.scale.warmup_seconds,
            connections=self.scale.connections,
        )
        self._wait_rows(tag, run["ok"])

    def _fixed_rates(self, gateway: Service, prefix: str) -> list[dict[str, Any]]:
        runs = []
        for rate in self.scale.rates:
            tag = f"{prefix}-{rate}"
            say(
                f"{prefix}: single events at {rate} req/s for {self.scale.rate_seconds:g} s"
                " (open loop)"
            )
            http = self._load(
                gateway,
                tag,
                1,
                duration=self.scale.rate_seconds,
                rate=rate,
                connections=OPEN_LOOP_IN_FLIGHT,
            )
            rows = self._receipt_to_row(tag, http["ok"])
            lat, e2e = http["latency_ms"], rows["latency_ms"]
            say(
                f"   {http['requests_per_s']:.0f} req/s answered 2xx; HTTP p50 {lat['p50']} ms, "
                f"p99 {lat['p99']} ms; receipt-to-row p50 {e2e['p50']} ms, p99 {e2e['p99']} ms; "
                f"{rows['rows_found']}/{rows['events_acknowledged']} rows"
            )
            runs.append({"offered_rate": rate, "http": http, "receipt_to_row": rows})
        return runs

    def gateway_latency(self) -> None:
        self.results.setdefault("gateway", {})["fixed_rates"] = self._fixed_rates(
            self.gateway, "stream"
        )

    def end_to_end(self) -> None:
        gateway, worker = self.gateway, self.worker
        self.results["end_to_end"] = {"latency_at_rate": self._e2e_latency(gateway)}
        # The closed loop leaves a backlog (the gateway accepts faster than the worker
        # stores); wait it out, so that the sustained runs below start from an empty topic.
        probe = self._e2e_run(
            "e2e-max", gateway, worker, self.scale.probe_seconds, rate=0.0,
            drain_timeout=3 * self.scale.drain_timeout,
        )  # fmt: skip
        # What the pipeline can take: the worker's rate while the gateway ran flat out, or
        # its drain rate once the gateway stopped, whichever is higher, and never more
        # than the gateway accepted. Try just below it; if the lag grows, try lower once.
        capacity = max(
            probe["stored_events_per_s_during_load"], probe.get("worker_drain_events_per_s") or 0
        )
        capacity = min(capacity, probe["accepted_events_per_s_during_load"])
        attempts = []
        for share in (0.9, 0.6):
            rate = round(max(BATCH, share * capacity) / BATCH, 1)
            run = self._e2e_run(
                f"e2e-sustained-{int(share * 100)}",
                gateway,
                worker,
                self.scale.sustain_seconds,
                rate,
            )
            attempts.append(run)
            if run["lag_bounded"]:
                break
        bounded = [a for a in attempts if a["lag_bounded"]]
        self.results["end_to_end"] |= {
            "at_maximum": probe,
            "sustained": bounded[0] if bounded else attempts[-1],
            "sustained_attempts": attempts,
        }
        self.results.setdefault("memory", {})["worker"] = {
            "pid": worker.pid,
            "rss_mb": _rss_mb(worker.pid),
            "after": "end-to-end load",
        }

    def _e2e_latency(self, gateway: Service) -> dict[str, Any]:
        events = self.scale.e2e_latency_events
        rate = events / BATCH
        tag = f"e2e-latency-{events}"
        say(
            f"{tag}: 20-event requests at {rate:g} req/s = {events} events/s for "
            f"{self.scale.rate_seconds:g} s (open loop); receipt-to-row from the rows"
        )
        http = self._load(
            gateway, tag, BATCH, duration=self.scale.rate_seconds, rate=rate,
            connections=OPEN_LOOP_IN_FLIGHT,
        )  # fmt: skip
        rows = self._receipt_to_row(tag, http["ok"] * BATCH)
        say(
            f"   HTTP p99 {http['latency_ms']['p99']} ms; receipt-to-row p50 "
            f"{rows['latency_ms']['p50']} ms, p99 {rows['latency_ms']['p99']} ms; "
            f"{rows['rows_found']}/{rows['events_acknowledged']} rows"
        )
        return {"offered_events_per_s": events, "http": http, "receipt_to_row": rows}

    def _e2e_run(
        self,
        tag: str,
        gateway: Service,
        worker: Service,
        seconds: float,
        rate: float,
        drain_timeout: float | None = None,
    ) -> dict[str, Any]:
        how = (
            f"open loop at {rate:g} req/s"
            if rate
            else f"closed loop, {self.scale.connections} clients"
        )
        say(f"{tag}: 20-event requests, {how}, {seconds:g} s; sampling accepted/stored each second")
        sampler = CounterSampler(f"{gateway.url}/metrics", f"{worker.url}/metrics")
        base = sampler.read()
        if base is None:
            raise StepFailed("could not read the gateway's or the worker's /metrics")
        sampler.start()
        load_started = time.monotonic() - sampler._started
        connections = OPEN_LOOP_IN_FLIGHT if rate else self.scale.connections
        worker_cpu = cpu_seconds(worker.pid)
        http = self._load(gateway, tag, BATCH, duration=seconds, rate=rate, connections=connections)
        load_ended = time.monotonic() - sampler._started
        drained_at = self._wait_counters(sampler, base, drain_timeout or self.scale.drain_timeout)
        samples = sampler.stop()
        summary = self._e2e_summary(http, samples, base, load_started, load_ended, drained_at, rate)
        final, worker_cpu_after = sampler.read(), cpu_seconds(worker.pid)
        if final is not None and worker_cpu is not None and worker_cpu_after is not None:
            stored = final[1] - base[1]
            summary["worker_cpu_seconds"] = round(worker_cpu_after - worker_cpu, 2)
            summary["worker_cpu_ms_per_event"] = round(
                1000 * (worker_cpu_after - worker_cpu) / max(1.0, stored), 3
            )
        return summary

    def _wait_counters(
        self, sampler: CounterSampler, base: tuple[float, float], timeout: float
    ) -> float | None:
        """When the worker had stored everything the gateway accepted since ``base``."""
        deadline = time.monotonic() + timeout
        said = time.monotonic()
        while time.monotonic() < deadline:
            now = sampler.read()
            if now is not None and now[1] - base[1] >= now[0] - base[0]:
                return time.monotonic() - sampler._started
            if now is not None and time.monotonic() - said >= 15:
                lag = int((now[0] - base[0]) - (now[1] - base[1]))
                say(f"   waiting for the worker to drain: {lag:,} events behind")
                said = time.monotonic()
            time.sleep(0.25)
        say(f"   the worker did not drain within {timeout:g} s")
        return None

    def _e2e_summary(
        self,
        http: dict[str, Any],
        samples: list[Sample],
        base: tuple[float, float],
        started: float,
        ended: float,
        drained_at: float | None,
        rate: float,
    ) -> dict[str, Any]:
        during = [s for s in samples if started <= s.at <= ended]
        steady = [s for s in during if s.at >= started + min(2.0, (ended - started) / 3)]
        window = steady if len(steady) >= 2 else during
        lags = [
            (round(s.at - started, 1), int((s.accepted - base[0]) - (s.stored - base[1])))
            for s in during
        ]
        stored_rate = accepted_rate = 0.0
        if len(window) >= 2:
            span = window[-1].at - window[0].at
            stored_rate = (window[-1].stored - window[0].stored) / span
            accepted_rate = (window[-1].accepted - window[0].accepted) / span
        last = during[-1] if during else None
        lag_at_end = int((last.accepted - base[0]) - (last.stored - base[1])) if last else None
        drain_seconds = None if drained_at is None else round(max(0.0, drained_at - ended), 1)
        offered_events = rate * BATCH
        bounded = max_lag_seconds = None
        if rate and during:
            # Bounded: in the second half of the load the worker is never more than two
            # seconds' worth of events behind, and it catches up within 10 s of the end.
            second_half = [lag for at, lag in lags if at >= (ended - started) / 2]
            max_lag_seconds = round(max(lag for _, lag in lags) / offered_events, 2)
            bounded = (
                drain_seconds is not None
                and drain_seconds <= 10
                and max(second_half, default=0) <= 2 * offered_events
            )
        summary = {
            "http": http,
            "offered_events_per_s": offered_events or None,
            "accepted_events_per_s_during_load": round(accepted_rate),
            "stored_events_per_s_during_load": round(stored_rate),
            "lag_events_at_end_of_load": lag_at_end,
            "max_lag_events": max((lag for _, lag in lags), default=None),
            "max_lag_seconds_of_load": max_lag_seconds,
            "drained_seconds_after_load": drain_seconds,
            "lag_bounded": bounded,
            "lag_timeline": lags,
        }
        if last is not None and (drain_seconds is None or drain_seconds > 0.5):
            after = [s for s in samples if s.at >= ended]  # drained or not: its rate
            if len(after) >= 2 and after[-1].at - after[0].at >= 2:
                summary["worker_drain_events_per_s"] = round(
                    (after[-1].stored - after[0].stored) / (after[-1].at - after[0].at)
                )
        say(
            f"   accepted {summary['accepted_events_per_s_during_load']:,}/s, stored "
            f"{summary['stored_events_per_s_during_load']:,}/s, lag at end {lag_at_end}, "
            f"drained {drain_seconds} s after; bounded: {bounded}"
        )
        return summary

    def gateway_alone(self) -> None:
        say("stopping the worker: the gateway alone from here (Kafka keeps the events)")
        self.worker.stop()
        gateway = self.results.setdefault("gateway", {})
        gateway.update(self._maxima(self.gateway, "stream"))
        self.results.setdefault("memory", {})["gateway"] = {
            "pid": self.gateway.pid,
            "rss_mb": _rss_mb(self.gateway.pid),
            "after": "fixed rates, end-to-end and maximum load",
        }
        self.gateway.stop()

    def _maxima(self, gateway: Service, prefix: str) -> dict[str, Any]:
        found = {}
        for events, key in ((1, "max_single"), (BATCH, "max_batch20")):
            say(
                f"{prefix}: {events}-event requests at maximum, closed loop, "
                f"{self.scale.connections} clients, {self.scale.max_seconds:g} s"
            )
            run = self._load(
                gateway,
                f"{prefix}-{key}",
                events,
                duration=self.scale.max_seconds,
                connections=self.scale.connections,
            )
            say(
                f"   {run['requests_per_s']:,.0f} req/s, {run['events_per_s']:,.0f} events/s, "
                f"p50 {run['latency_ms']['p50']} ms, p99 {run['latency_ms']['p99']} ms"
            )
            found[key] = run
        return found

    def inline(self) -> None:
        help_text = self._gateway_help()
        if "--inline" not in help_text:
            say("`trackflow gateway --help` has no --inline option: inline mode not available")
            self.results["inline"] = {
                "available": False,
                "note": "not available: `trackflow gateway --help` has no --inline option",
            }
            return
        self.results["inline"] = {"available": True}
        gateway = self._stack.gateway("gateway-inline", ["--inline"])
        say("starting the inline gateway (trackflow gateway --inline; no worker, no Kafka)")
        gateway.start()
        try:
            self._warm_up(gateway, "inline-warmup")
            self.results["inline"]["fixed_rates"] = self._fixed_rates(gateway, "inline")
            self.results["inline"].update(self._maxima(gateway, "inline"))
            self.results.setdefault("memory", {})["gateway_inline"] = {
                "pid": gateway.pid,
                "rss_mb": _rss_mb(gateway.pid),
                "after": "its load",
            }
        finally:
            gateway.stop()

    def _gateway_help(self) -> str:
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "trackflow", "gateway", "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    def memory(self) -> None:
        found = self._stack.memory()
        memory = self.results.setdefault("memory", {})
        for key, value in found.items():
            memory[key] = {**value, "after": "all load"}
        for key, value in memory.items():
            say(f"RSS {key}: {value.get('rss_mb')} MB")

    def teardown(self) -> None:
        for service in (getattr(self, "gateway", None), getattr(self, "worker", None)):
            if service is not None:
                service.stop()
        if self.stack is not None:
            say("stopping Kafka and PostgreSQL")
            self.stack.stop()


def run_benchmark(scale: Scale, keep: bool = False) -> dict[str, Any]:
    """Run every step; the results (with ``errors`` listing any step that crashed)."""
    started = time.monotonic()
    bench = Benchmark(scale, keep)
    try:
        if bench.step("set up: load generator, Kafka broker, PostgreSQL", bench.setup):
            bench.step("ceiling: raw Kafka producer", bench.ceilings_kafka)
            bench.step(
                "ceiling: raw PostgreSQL COPY, and the store stage alone", bench.ceilings_postgres
            )
            if bench.step("start the worker and the gateway", bench.start_pipeline):
                bench.step(
                    "gateway latency and receipt-to-row at fixed rates", bench.gateway_latency
                )
                bench.step("end to end: maximum, then sustained", bench.end_to_end)
                bench.step("gateway alone at maximum", bench.gateway_alone)
            bench.step("inline mode", bench.inline)
            bench.step("resident memory", bench.memory)
    finally:
        bench.teardown()
    results = bench.results
    results["load_average_at_end"] = load_average()
    results["duration_seconds"] = round(time.monotonic() - started)
    return results
