"""The workers' composition root: one Faust app, one agent per stage.

    trackflow.events.raw.v1 ──> identify ──> trackflow.events.identified.v1 ──> enrich ──┐
                                   └──> trackflow.identity.claims.v1 ──> merge ──> PostgreSQL
                                         (keyed by identifier)   (merges, aliases, conflicts)
    ┌────────────────────────────────────────────────────────────────────────────────────┘
    └──> trackflow.events.enriched.v1 ──> store ──> PostgreSQL
                                  │                                          │   (events, profiles,
                                  └─────> trackflow.events.failed.v1 <───────┘    sessions)
                                              └──> store_failed ──> failed_events
    trackflow.config.v1 ──> config_mirror ──> PostgreSQL (sources, rules)

    trackflow.events.enriched.v1 ──> workflow ──> PostgreSQL (profile tags and traits, runs)
       (its own consumer, in        │  ├──> trackflow.events.raw.v1 (emitted events)
        parallel with the store)    │  └──> other topics (produce actions)
                                    └──> trackflow.webhooks.v1 ──> webhooks ──> HTTP
                  trackflow.webhooks.retry.v1 ──> webhook_retries ──┘  (failed attempts wait
                                                  here; dead letters: trackflow.webhooks.dead.v1)

Each agent decodes, calls its stage, forwards, and acknowledges a message only after
what it produced is durable (database commit or broker ack), so a crash replays and the
idempotent store never loses or doubles an event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
import httpx
from aiokafka.errors import KafkaError
from faust.types import EventT, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processors.enrich_stage import SourceEnricher, enrich_context
from processors.forward_step import ForwardStep
from processors.identify_stage import IdentifyStep, identity_configs
from processors.identity_store import IdentityStore
from processors.lag import LagProbe
from processors.merge_stage import MergeStep
from processors.metrics import WorkerMetrics
from processors.postgres import PostgresStore
from processors.retry import retry_while_retriable
from processors.store_step import Message, StoreStep
from processors.webhooks import WebhookDeliverer, WebhookSender
from processors.workflow_stage import Outgoing, RuleRegistry, WorkflowStep
from processors.workflow_store import WorkflowStore
from schemas import FailedEvent, decode_event, decode_raw_event, encode
from schemas.config import ConfigRecord, EventSource, parse_config_record
from schemas.enrichment import EnrichedEvent
from schemas.rules import RuleRecord, WebhookDelivery
from schemas.topics import (
    CONFIG,
    EVENTS_ENRICHED,
    EVENTS_FAILED,
    EVENTS_IDENTIFIED,
    EVENTS_RAW,
    IDENTITY_CLAIMS,
    WEBHOOKS,
    WEBHOOKS_RETRY,
)
from trackflow.config_topic import ConfigFollower, SourceRegistry
from trackflow.settings import Settings

__all__ = ["create_worker_app"]

log = logging.getLogger(__name__)

CONSUMED_TOPICS = (
    EVENTS_RAW,
    EVENTS_IDENTIFIED,
    IDENTITY_CLAIMS,
    EVENTS_ENRICHED,
    EVENTS_FAILED,
    CONFIG,
    WEBHOOKS,
    WEBHOOKS_RETRY,
)


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
    workflow_db = WorkflowStore(settings.dsn())
    metrics = WorkerMetrics(registry or CollectorRegistry())
    lag = LagProbe(settings.kafka_bootstrap)
    raw_topic = app.topic(EVENTS_RAW, key_serializer="raw", value_serializer="raw")
    enriched_topic = app.topic(EVENTS_ENRICHED, key_serializer="raw", value_serializer="raw")
    failed_topic = app.topic(EVENTS_FAILED, key_serializer="raw", value_serializer="raw")
    config_topic = app.topic(CONFIG, key_serializer="raw", value_serializer="raw")
    identified_topic = app.topic(EVENTS_IDENTIFIED, key_serializer="raw", value_serializer="raw")
    claims_topic = app.topic(IDENTITY_CLAIMS, key_serializer="raw", value_serializer="raw")
    identity_db = IdentityStore(settings.dsn())
    identify_config, merge_config = identity_configs(settings)
    identify_step = IdentifyStep(identity_db, identify_config, settings.store_retry_max_seconds)
    merge_step = MergeStep(
        identity_db,
        merge_config,
        metrics,
        user_id_hashed="user_id" in identify_config.hashed_types,
        retry_cap=settings.store_retry_max_seconds,
    )

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
    rules = RuleRegistry()
    config = ConfigFollower(settings.kafka_bootstrap, _each(sources.apply, rules.apply))
    enrich_step = ForwardStep(
        "enrich", decode_raw_event, SourceEnricher(enrich_context(settings), sources)
    )

    @app.agent(raw_topic, name="identify")
    async def identify_events(stream: StreamT[Any]) -> None:
        await identity_db.start()
        async for events in _batches(stream, settings):
            with metrics.stage_seconds.labels("identify").time():
                result = await identify_step([_message(e) for e in events])
            await _send_all(identified_topic, result.outputs)
            await _send_all(claims_topic, result.claims)
            if result.failures:
                await send_failed(result.failures)
            for conflict in await identify_step.commit(result):
                metrics.identity_conflicts.labels(conflict.reason).inc()
            metrics.stage_events.labels("identify", "ok").inc(len(result.outputs))
            await _ack_all(stream, events)

    @app.agent(claims_topic, name="merge")
    async def merge_claims(stream: StreamT[Any]) -> None:
        await identity_db.start()
        async for events in _batches(stream, settings):
            with metrics.stage_seconds.labels("merge").time():
                failures = await merge_step([_message(e) for e in events])
            if failures:
                await send_failed(failures)
            metrics.stage_events.labels("merge", "ok").inc(len(events) - len(failures))
            await _ack_all(stream, events)

    @app.agent(identified_topic, name="enrich")
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
        await workflow_db.start()
        async for events in _batches(stream, settings):
            write = functools.partial(db.write_sources, _decode_sources(events))
            await retry_while_retriable(write, "mirror config", settings.store_retry_max_seconds)
            write = functools.partial(workflow_db.write_rules, _decode_rules(events))
            await retry_while_retriable(write, "mirror rules", settings.store_retry_max_seconds)
            await _ack_all(stream, events)

    # -- workflows: rules -> actions, webhooks delivered off the event path ---------------
    topics = {EVENTS_RAW: raw_topic}

    async def send_outgoing(records: Sequence[Outgoing]) -> list[BaseException | None]:
        """Send every record; then, per record, None once the broker has it or the error."""
        pending: list[Any] = []
        for r in records:
            topic = topics.get(r.topic) or topics.setdefault(
                r.topic, app.topic(r.topic, key_serializer="raw", value_serializer="raw")
            )
            try:
                pending.append(await topic.send(key=r.key, value=r.value, headers=list(r.headers)))
            except Exception as exc:
                pending.append(exc)
        results: list[BaseException | None] = []
        for item in pending:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                await item
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    workflow_step = WorkflowStep(
        workflow_db,
        rules,
        functools.partial(decode_event, model=EnrichedEvent),
        send_outgoing,
        send_failed,
        metrics,
        settings.store_retry_max_seconds,
        _utcnow,
        settings.workflow_max_emit_depth,
    )

    @app.agent(enriched_topic, name="workflow")
    async def run_workflows(stream: StreamT[Any]) -> None:
        await workflow_db.start()
        await config.start()  # the rules, read to the end of the config topic
        async for events in _batches(stream, settings):
            with metrics.stage_seconds.labels("workflow").time():
                try:
                    await workflow_step([_message(e) for e in events])
                except Exception as exc:
                    log.exception("workflow stage crashed; stopping the worker")
                    await app.crash(exc)
                    raise
            await _ack_all(stream, events)

    deliverer = WebhookDeliverer(
        WebhookSender(httpx.AsyncClient(), settings.webhook_allow_list(), settings.webhook_secrets),
        workflow_db,
        send_outgoing,
        metrics,
        _utcnow,
        settings.webhook_retry_base_seconds,
        settings.webhook_retry_max_seconds,
        settings.store_retry_max_seconds,
        settings.webhook_max_in_flight,
    )
    webhooks_topic = app.topic(WEBHOOKS, key_serializer="raw", value_serializer="raw")
    retry_topic = app.topic(WEBHOOKS_RETRY, key_serializer="raw", value_serializer="raw")
    topics.update({WEBHOOKS: webhooks_topic, WEBHOOKS_RETRY: retry_topic})

    async def deliver(stream: StreamT[Any]) -> None:
        """Each request in its own task (a slow or waiting one holds up no other); a request
        is acknowledged once delivered, rescheduled or dead-lettered."""
        await workflow_db.start()
        running: set[asyncio.Task[None]] = set()
        try:
            async for events in _batches(stream, settings):
                for event in events:
                    task = asyncio.create_task(_deliver_one(deliverer, stream, event))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:  # unacknowledged requests are replayed after a restart
            for task in running:
                task.cancel()

    app.agent(webhooks_topic, name="webhooks")(deliver)
    app.agent(retry_topic, name="webhook_retries")(deliver)

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
            record = parse_config_record(event.value)
        except ValueError as exc:
            log.error(
                "skipping unreadable config record at offset %s: %s", event.message.offset, exc
            )
            continue
        if isinstance(record, ConfigRecord):
            latest[record.source.id] = record.source
    return list(latest.values())


def _decode_rules(events: Sequence[EventT[Any]]) -> list[RuleRecord]:
    latest: dict[str, RuleRecord] = {}
    for event in events:
        try:
            record = parse_config_record(event.value) if event.value is not None else None
        except ValueError:
            continue  # logged by _decode_sources
        if isinstance(record, RuleRecord):
            latest[record.rule.id] = record
    return list(latest.values())


def _each(*appliers: Any) -> Any:
    """One config-record callback that feeds every registry."""

    def apply(record: ConfigRecord | RuleRecord) -> None:
        for applier in appliers:
            applier(record)

    return apply


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _deliver_one(
    deliverer: WebhookDeliverer, stream: StreamT[Any], event: EventT[Any]
) -> None:
    m = event.message
    try:
        delivery = WebhookDelivery.model_validate_json(event.value or b"")
    except ValueError as exc:
        log.error(
            "skipping unreadable webhook request %s[%s]@%s: %s", m.topic, m.partition, m.offset, exc
        )
        await stream.ack(event)
        return
    try:
        await deliverer.handle(delivery)
    except Exception:
        # left unacknowledged: a restart replays it (a delivered call is not sent again)
        log.exception(
            "webhook request %s[%s]@%s could not be handled", m.topic, m.partition, m.offset
        )
        return
    await stream.ack(event)


async def _send_all(topic: Any, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send, then wait until the broker has every record (before the source is acked)."""
    pending = [await topic.send(key=key, value=value) for key, value in records]
    for future in pending:
        await future


async def _ack_all(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
    for event in events:
        await stream.ack(event)
