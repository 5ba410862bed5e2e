"""The gateway's composition root: ``create_app`` wires routes to injected seams.

``create_app`` takes every seam (publisher, source registry, id factory, clock, metrics
registry); ``kafka_app`` builds the production wiring from settings.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ingest_gateway.client_ip import parse_trusted_proxies
from ingest_gateway.cors import SourceCors
from ingest_gateway.errors import GatewayError, PayloadTooLarge, Unavailable
from ingest_gateway.ingest import IdFactory, to_records
from ingest_gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics, MetricsMiddleware
from ingest_gateway.publisher import KafkaPublisher, Publisher, PublishFailed, RecordTooLarge
from ingest_gateway.ratelimit import RateLimiter
from ingest_gateway.routes import Ingest, add_ingest_routes, json_response
from ingest_gateway.sources import SourceRegistry
from ingest_gateway.tracker import StaticAsset
from schemas import RawEvent
from trackflow.config_topic import ConfigFollower
from trackflow.settings import Settings

__all__ = ["create_app", "inline_app", "kafka_app", "kafka_app_from_env"]

log = logging.getLogger(__name__)
ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _new_id() -> str:
    return str(uuid.uuid4())


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    publisher: Publisher,
    sources: SourceRegistry,
    services: Sequence[Service] = (),
    ready_checks: Sequence[ReadyCheck] = (),
    new_id: IdFactory = _new_id,
    clock: Callable[[], datetime] = _utcnow,
    monotonic: Callable[[], float] = time.monotonic,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    metrics = GatewayMetrics(registry or CollectorRegistry())
    limiter = RateLimiter()
    trusted = settings.trusted_proxy_list()
    parse_trusted_proxies(tuple(trusted))  # a bad entry stops start-up, naming it

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for service in services:
            await service.start()
        try:
            yield
        finally:
            for service in reversed(services):
                await service.stop()

    app = FastAPI(title="trackflow gateway", lifespan=lifespan)
    app.add_middleware(SourceCors, sources=sources.all)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        source = getattr(request.state, "source_id", "")
        metrics.events_rejected.labels(source, exc.code).inc()
        return json_response(exc.body(), exc.status, exc.headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        body = {"error": {"status": exc.status_code, "code": "http_error", "message": exc.detail}}
        return json_response(body, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        body = {"error": {"status": 500, "code": "internal_error", "message": "internal error"}}
        return json_response(body, 500)

    async def publish(events: Sequence[RawEvent]) -> None:
        started = time.perf_counter()
        try:
            await publisher.publish(to_records(events))
        except RecordTooLarge as exc:
            raise PayloadTooLarge(f"an event is too large for the broker: {exc}") from None
        except PublishFailed as exc:
            metrics.kafka_ready.set(0)
            raise Unavailable(
                f"events not accepted: {exc}; retry later", settings.retry_after_seconds
            ) from None
        metrics.kafka_ready.set(1)
        metrics.produce_seconds.observe(time.perf_counter() - started)

    ingest = Ingest(settings, sources, limiter, metrics, publish, new_id, clock, monotonic, trusted)
    add_ingest_routes(app, ingest)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        kafka_ok, kafka_reason = await publisher.is_ready()
        metrics.kafka_ready.set(1 if kafka_ok else 0)
        checks = [(kafka_ok, kafka_reason)] + [await check() for check in ready_checks]
        failing = [reason for ok, reason in checks if not ok]
        if failing:
            return json_response({"status": "not ready", "reasons": failing}, 503)
        return json_response({"status": "ready"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    tracker_js = StaticAsset.read()

    @app.get(
        "/tracker.js",
        response_class=Response,
        responses={
            200: {"content": {"application/javascript": {}}, "description": "the tracker"},
            304: {"description": "not modified (If-None-Match has the current ETag)"},
        },
    )
    async def tracker(request: Request) -> Response:
        """trackflow's browser tracker (see the README for the loader snippet)."""
        headers = request.headers
        return tracker_js.response(headers.get("if-none-match"), headers.get("accept-encoding"))

    return app


def kafka_app(settings: Settings) -> FastAPI:
    """Production wiring: an idempotent Kafka publisher and the followed config topic."""
    publisher = KafkaPublisher(settings.kafka_bootstrap, settings.publish_timeout_seconds)
    sources = SourceRegistry()
    follower = ConfigFollower(settings.kafka_bootstrap, sources.apply)

    async def config_ready() -> tuple[bool, str]:
        return follower.caught_up, "ok" if follower.caught_up else "config topic not read yet"

    return create_app(
        settings,
        publisher=publisher,
        sources=sources,
        services=[publisher, follower],
        ready_checks=[config_ready],
    )


def inline_app(settings: Settings) -> FastAPI:
    """Inline wiring: stages and the PostgreSQL write inside the request; no Kafka."""
    from ingest_gateway.inline import InlinePublisher, PostgresSourcePoller
    from processors.enrich_stage import SourceEnricher, enrich_context
    from processors.postgres import PostgresStore

    store = PostgresStore(settings.dsn(), max_connections=8)
    sources = SourceRegistry()
    publisher = InlinePublisher(store, SourceEnricher(enrich_context(settings), sources))
    poller = PostgresSourcePoller(store, sources)
    return create_app(settings, publisher=publisher, sources=sources, services=[publisher, poller])


def kafka_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several worker processes: each reads settings."""
    from trackflow.logs import configure_logging
    from trackflow.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    return inline_app(settings) if settings.gateway_inline else kafka_app(settings)
