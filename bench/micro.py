"""The ceilings: raw Kafka producer and raw PostgreSQL COPY, and the store stage alone.

* producer: the gateway's own ``KafkaPublisher`` (same settings: idempotent, ``acks=all``,
  linger, timeouts), fed with records that ``accept_track`` + ``to_records`` made, sent to
  a benchmark topic with the same partitions so the worker never sees them. Three ways:
  pipelined sends with a window of unacknowledged records (the ceiling), and
  ``publish()`` of 1 or 20 records by 64 concurrent callers (how the gateway uses it).
* COPY: ``plan_event_rows`` rows copied with psycopg's ``write_row`` (as the store does)
  into a table like ``events`` (same keys and indexes), one transaction per batch.
* store: ``PostgresStore.write_events`` with the worker's batch size, one batch at a time
  (the store agent awaits each batch), each row a new event id.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.payloads import event_rows, fresh_rows, raw_events, records
from ingest_gateway.publisher import KafkaPublisher, Record
from processors.postgres import PostgresStore
from processors.store import EVENT_COLUMNS

__all__ = ["BENCH_TOPIC", "copy_throughput", "producer_throughput", "store_throughput"]

BENCH_TOPIC = "trackflow.bench.producer"


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[max(0, int(q * len(ordered) + 0.999999) - 1)] * 1000, 2)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1] * 1000, 2)}


async def _ensure_bench_topic(bootstrap: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        if BENCH_TOPIC not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(BENCH_TOPIC, partitions, 1)])
    finally:
        await admin.close()


async def _pipelined(
    publisher: KafkaPublisher, recs: list[Record], duration: float
) -> dict[str, Any]:
    producer = publisher.producer
    window: deque[asyncio.Future[Any]] = deque()
    sent = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        for _ in range(500):
            r = recs[sent % len(recs)]
            window.append(await producer.send(r.topic, value=r.value, key=r.key))
            sent += 1
        while len(window) > 20_000:
            await window.popleft()
    for future in window:
        await future
    elapsed = time.perf_counter() - started
    return {"events": sent, "seconds": round(elapsed, 2), "events_per_s": round(sent / elapsed)}


async def _publish_callers(
    publisher: KafkaPublisher, recs: list[Record], per_call: int, callers: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    counter = 0
    deadline = time.perf_counter() + duration

    async def caller() -> None:
        nonlocal counter
        while time.perf_counter() < deadline:
            start = counter
            counter += per_call
            batch = [recs[(start + k) % len(recs)] for k in range(per_call)]
            began = time.perf_counter()
            await publisher.publish(batch)
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    events = len(latencies) * per_call
    return {
        "events_per_call": per_call,
        "concurrent_callers": callers,
        "calls_per_s": round(len(latencies) / elapsed),
        "events_per_s": round(events / elapsed),
        "ack_latency_ms": _percentiles(latencies),
    }


async def producer_throughput(
    bootstrap: str, partitions: int, timeout: float, duration: float
) -> dict[str, Any]:
    await _ensure_bench_topic(bootstrap, partitions)
    events = raw_events(2000, "producer")
    recs = records(events, BENCH_TOPIC)
    publisher = KafkaPublisher(bootstrap, timeout)
    await publisher.start()
    try:
        await _pipelined(publisher, recs, min(1.0, duration))  # warm-up: connections, metadata
        pipelined = await _pipelined(publisher, recs, duration)
        single = await _publish_callers(publisher, recs, 1, 64, duration)
        batch = await _publish_callers(publisher, recs, 20, 64, duration)
    finally:
        await publisher.stop()
    return {
        "record_bytes_mean": round(sum(len(r.value) for r in recs) / len(recs)),
        "pipelined": pipelined,
        "publish_1": single,
        "publish_20": batch,
        # the ceiling: the best of the three ways of driving the same producer
        "events_per_s": max(x["events_per_s"] for x in (pipelined, single, batch)),
    }


_COPY_TABLE = "bench_copy"


async def copy_throughput(dsn: str, batch_size: int, duration: float) -> dict[str, Any]:
    template = event_rows(raw_events(2000, "copy"))
    columns = ", ".join(EVENT_COLUMNS)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {_COPY_TABLE}")
        await conn.execute(f"CREATE TABLE {_COPY_TABLE} (LIKE events INCLUDING ALL)")
        batches = fresh_rows(template, batch_size, "copy")

        async def one_batch() -> int:
            rows = next(batches)
            async with (
                conn.transaction(),
                conn.cursor().copy(f"COPY {_COPY_TABLE} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    await copy.write_row(row)
            return len(rows)

        await one_batch()  # warm-up
        rows, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            rows += await one_batch()
        elapsed = time.perf_counter() - started
        await conn.execute(f"DROP TABLE {_COPY_TABLE}")
    return {
        "batch_size": batch_size,
        "rows": rows,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
    }


async def store_throughput(dsn: str, batch_size: int, duration: float) -> dict[str, Any]:
    template = event_rows(raw_events(2000, "store"))
    batches = fresh_rows(template, batch_size, "store")
    store = PostgresStore(dsn)
    await store.start()
    latencies: list[float] = []
    try:
        await store.write_events(next(batches))  # warm-up (and the pool's first connection)
        rows, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            began = time.perf_counter()
            rows += await store.write_events(next(batches))
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
    finally:
        await store.stop()
    return {
        "batch_size": batch_size,
        "rows": rows,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
        "batch_latency_ms": _percentiles(latencies),
    }
