"""The workers' composition root: one Faust app, one agent per stage.

    trackflow.events.raw.v1 ──> enrich ──> trackflow.events.enriched.v1 ──> store ──> PostgreSQL
                                  │                                          │   (events, profiles,
                                  └─────> trackflow.events.failed.v1 <───────┘    sessions)
                                              └──> store_failed ──> failed_events
    trackflow.config.v1 ──> config_mirror ──> PostgreSQL (sources)

Each agent decodes, calls its stage, forwards, and acknowledges a message only after
what it produced is durable (database commit or broker ack), so a crash replays and the
idempotent store never loses or doubles an event.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types import EventT, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processors.enrich_stage import SourceEnricher, enrich_context
from processors.forward_step import ForwardStep
from processors.lag import LagProbe
from processors.metrics import WorkerMetrics
from processors.postgres import PostgresStore
from processors.retry import retry_while_retriable
from processors.store_step import Message, StoreStep
from schemas import FailedEvent, decode_event, decode_raw_event, encode
from schemas.config import ConfigRecord, EventSource
from schemas.enrichment import EnrichedEvent
from schemas.topics import CONFIG, EVENTS_ENRICHED, EVENTS_FAILED, EVENTS_RAW
from trackflow.config_topic import ConfigFollower, SourceRegistry
from trackflow.settings import Settings

__all__ = ["create_worker_app"]

log = logging.getLogger(__name__)

CONSUMED_TOPICS = (EVENTS_RAW, EVENTS_ENRICHED, EVENTS_FAILED, CONFIG)


def create_worker_app(
    settings: Settings,
    store: PostgresStore | None = None,
    registry: CollectorRegistry | None = None,
) -> faust.App:
    app = faust.App(
        settings.worker_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_replication_factor=settings.topic_replication_factor,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        web_bind=settings.worker_host,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        web_in_thread=False,
    )
    db = store or PostgresStore(settings.dsn())
    metrics = WorkerMetrics(registry or CollectorRegistry())
    lag = LagProbe(settings.kafka_bootstrap)
    raw_topic = app.topic(EVENTS_RAW, key_serializer="raw", value_serializer="raw")
    enriched_topic = app.topic(EVENTS_ENRICHED, key_serializer="raw", value_serializer="raw")
    failed_topic = app.topic(EVENTS_FAILED, key_serializer="raw", value_serializer="raw")
    config_topic = app.topic(CONFIG, key_serializer="raw", value_serializer="raw")

    async def send_failed(failures: Sequence[FailedEvent]) -> None:
        pending = [
            await failed_topic.send(key=(f.event_id or "").encode(), value=encode(f))
            for f in failures
        ]
        for future in pending:
            await future  # the broker has it before the source offset is acked
        for f in failures:
            metrics.failed_events.labels(f.stage, f.code).inc()
            metrics.stage_events.labels(f.stage, "failed").inc()

    store_step = StoreStep(
        db,
        functools.partial(decode_event, model=EnrichedEvent),
        send_failed,
        metrics,
        settings.store_retry_max_seconds,
    )
    sources = SourceRegistry()
    config = ConfigFollower(settings.kafka_bootstrap, sources.apply)
    enrich_step = ForwardStep(
        "enrich", decode_raw_event, SourceEnricher(enrich_context(settings), sources)
    )

    @app.agent(raw_topic, name="enrich")
    async def enrich_events(stream: StreamT[Any]) -> None:
        if not config.caught_up:
            await config.start()
        async for events in _batches(stream, settings):
            with metrics.stage_seconds.labels("enrich").time():
                result = enrich_step([_message(e) for e in events])
            await _send_all(enriched_topic, result.outputs)
            if result.failures:
                await send_failed(result.failures)
            metrics.stage_events.labels("enrich", "ok").inc(len(result.outputs))
            await _ack_all(stream, events)

    @app.agent(enriched_topic, name="store")
    async def store_events(stream: StreamT[Any]) -> None:
        await db.start()
        async for events in _batches(stream, settings):
            with metrics.stage_seconds.labels("store").time():
                try:
                    await store_step([_message(e) for e in events])
                except Exception as exc:
                    # Not an outage (those are retried) and not bad input (failed events):
                    # a defect. Stop the worker so that a restart replays the unacked batch.
                    log.exception("store stage crashed; stopping the worker")
                    await app.crash(exc)
                    raise
            await _ack_all(stream, events)

    @app.agent(failed_topic, name="store_failed")
    async def store_failed(stream: StreamT[Any]) -> None:
        await db.start()
        async for events in _batches(stream, settings):
            write = functools.partial(db.write_failed, _decode_failures(events))
            await retry_while_retriable(
                write, "store failed events", settings.store_retry_max_seconds
            )
            await _ack_all(stream, events)

    @app.agent(config_topic, name="config_mirror")
    async def mirror_config(stream: StreamT[Any]) -> None:
        await db.start()
        async for events in _batches(stream, settings):
            write = functools.partial(db.write_sources, _decode_sources(events))
            await retry_while_retriable(write, "mirror config", settings.store_retry_max_seconds)
            await _ack_all(stream, events)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def export_lag() -> None:
        try:
            if not lag.started:
                await lag.start()
            lags = await lag.measure(settings.worker_id, CONSUMED_TOPICS)
        except KafkaError as exc:
            log.warning("could not measure consumer lag: %s", exc)
            return
        for tp, value in lags.items():
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(value)

    async def readiness() -> tuple[int, dict[str, Any]]:
        kafka_ok, kafka_reason = await lag.ping()
        db_ok, db_reason = await db.ping()
        assigned = sorted(str(tp) for tp in app.consumer.assignment()) if app.consumer else []
        reasons = [
            reason for ok, reason in ((kafka_ok, kafka_reason), (db_ok, db_reason)) if not ok
        ]
        reasons += [] if assigned else ["no partitions assigned"]
        metrics.ready.set(0 if reasons else 1)
        body = {
            "status": "not ready" if reasons else "ready",
            "reasons": reasons,
            "partitions": assigned,
        }
        return (503 if reasons else 200), body

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        status, body = await readiness()
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        await readiness()
        # aiohttp refuses a charset inside content_type=, so the header is set as is
        return web.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return app


def _batches(stream: StreamT[Any], settings: Settings) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Batches of events that stay unacknowledged until the agent acks them itself."""
    batches: AsyncIterator[Sequence[EventT[Any]]] = stream.noack_take(  # type: ignore[attr-defined]
        settings.store_batch_size, settings.store_batch_seconds
    )
    return batches


def _message(event: EventT[Any]) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, event.value)


def _decode_failures(events: Sequence[EventT[Any]]) -> list[FailedEvent]:
    failures = []
    for event in events:
        try:
            failures.append(FailedEvent.model_validate_json(event.value))
        except ValueError as exc:
            m = event.message
            log.error(
                "skipping unreadable failed-event record %s[%s]@%s: %s",
                m.topic,
                m.partition,
                m.offset,
                exc,
            )
    return failures


def _decode_sources(events: Sequence[EventT[Any]]) -> list[EventSource]:
    latest: dict[str, EventSource] = {}
    for event in events:
        if event.value is None:
            continue
        try:
            record = ConfigRecord.model_validate_json(event.value)
        except ValueError as exc:
            log.error(
                "skipping unreadable config record at offset %s: %s", event.message.offset, exc
            )
            continue
        latest[record.source.id] = record.source
    return list(latest.values())


async def _send_all(topic: Any, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send, then wait until the broker has every record (before the source is acked)."""
    pending = [await topic.send(key=key, value=value) for key, value in records]
    for future in pending:
        await future


async def _ack_all(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
    for event in events:
        await stream.ack(event)
