"""The ingest routes of every protocol: each reads its body, maps it with its pure module
(``ingest``, ``segment``, ``snowplow``), checks the source and publishes through
:class:`Ingest`, which holds the seams ``create_app`` was given.

    POST /track                                   Tracardi (``?profile_less=true``)
    GET|POST /collect/{event_type}/{source_id}    webhooks: query or body -> properties
    POST /v1/batch|track|identify|page|screen|group|alias (and /v1/b, t, i, p, s, g, a)
    GET /v1/projects/{write_key}/settings         settings for Segment's analytics.js
    POST /com.snowplowanalytics.snowplow/tp2      Snowplow, several events
    GET /i                                        Snowplow, one event as a query string
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ingest_gateway.batch import Rejected, reject_all
from ingest_gateway.body import FORM, has_nul, parse_json, read_body
from ingest_gateway.client_ip import client_ip
from ingest_gateway.cors import CORS_STATE
from ingest_gateway.errors import (
    BadRequest,
    GatewayError,
    InvalidPayload,
    NotFound,
    PayloadTooLarge,
    UnknownSource,
)
from ingest_gateway.ingest import IdFactory, accept_track, parse_track
from ingest_gateway.metrics import GatewayMetrics
from ingest_gateway.openapi import ERRORS, body, install_schemas, query
from ingest_gateway.ratelimit import RateLimiter
from ingest_gateway.segment import (
    BATCH_LIMIT_BYTES,
    MESSAGE_LIMIT_BYTES,
    SegmentItems,
    segment_items,
)
from ingest_gateway.snowplow import snowplow_event
from ingest_gateway.sources import SourceRegistry, check_source, source_for_write_key, write_key_of
from schemas import EventSource, RawEvent, RequestInfo, TrackPayload
from schemas.codec import describe_validation_error
from schemas.segment import SEGMENT_TYPES, SegmentBatch, SegmentMessage, SegmentType
from schemas.snowplow import SnowplowPayload
from trackflow.settings import Settings

__all__ = ["Ingest", "add_ingest_routes", "json_response"]

_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_SHORT = {"track": "t", "identify": "i", "page": "p", "screen": "s", "group": "g", "alias": "a"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


@dataclass(frozen=True)
class Ingest:
    """What every ingest route needs: settings, sources, limits, ids, clock and publishing."""

    settings: Settings
    sources: SourceRegistry
    limiter: RateLimiter
    metrics: GatewayMetrics
    publish: Callable[[Sequence[RawEvent]], Awaitable[None]]
    new_id: IdFactory
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    trusted: Sequence[str]

    def request_info(self, request: Request) -> RequestInfo:
        headers = request.headers
        peer = request.client.host if request.client else None
        return RequestInfo(
            ip=client_ip(peer, headers.get("x-forwarded-for"), self.trusted),
            user_agent=headers.get("user-agent"),
            origin=headers.get("origin"),
            referer=headers.get("referer"),
            accept_language=headers.get("accept-language"),
        )

    def source(self, request: Request, source_id: str) -> EventSource:
        """The checked source (write key from HTTP Basic or ``X-Write-Key``; Origin)."""
        request.state.source_id = source_id
        headers = request.headers
        key = write_key_of(headers.get("authorization"), headers.get("x-write-key"))
        source = check_source(self.sources, source_id, headers.get("origin"), key)
        setattr(request.state, CORS_STATE, source)
        return source

    def source_by_write_key(self, request: Request, key: str | None) -> EventSource:
        if key is None:
            raise UnknownSource(
                "no write key: send it as the HTTP Basic user name or as writeKey in the body"
            )
        found = source_for_write_key(self.sources, key)
        if found is None:
            raise UnknownSource("the write key matches no event source")
        request.state.source_id = found.id
        source = check_source(self.sources, found.id, request.headers.get("origin"), key)
        setattr(request.state, CORS_STATE, source)
        return source

    async def accept(
        self, sources: Sequence[EventSource], events: Sequence[RawEvent], rejected: int = 0
    ) -> None:
        """Rate limits, then publish (returns once Kafka has every event), then count."""
        now = self.monotonic()
        counts = (
            [len(events)]
            if len(sources) == 1
            else [sum(e.source_id == s.id for e in events) for s in sources]
        )
        for source, count in zip(sources, counts, strict=True):
            self.limiter.check(source, count, now)
        await self.publish(events)
        for source, count in zip(sources, counts, strict=True):
            self.metrics.events_accepted.labels(source.id).inc(count)
        if rejected:
            self.metrics.events_rejected.labels(sources[0].id, "invalid_item").inc(rejected)


def add_ingest_routes(app: FastAPI, ingest: Ingest) -> None:
    _tracardi(app, ingest)
    _segment(app, ingest)
    _snowplow(app, ingest)
    install_schemas(app, [TrackPayload, SegmentBatch, SegmentMessage, SnowplowPayload])


# --------------------------------------------------------------------------------------------
# Tracardi: /track and /collect
# --------------------------------------------------------------------------------------------


def _tracardi(app: FastAPI, ingest: Ingest) -> None:
    settings = ingest.settings

    @app.post(
        "/track",
        responses=ERRORS,
        openapi_extra={
            **body(TrackPayload, "Tracardi's tracker payload (application/json or text/plain)"),
            **query(("profile_less", False, "true: no profile; the answer has profile null")),
        },
    )
    async def track(request: Request) -> Response:
        """Tracardi's tracker payload; events that fail validation are listed in
        ``rejected`` by index and the rest are accepted."""
        raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
        payload, rejected = parse_track(parse_json(raw), settings.max_events_per_request)
        source = ingest.source(request, payload.source.id)
        accepted = accept_track(
            payload,
            ingest.request_info(request),
            new_id=ingest.new_id,
            now=ingest.clock(),
            rejected=rejected,
            profile_less=_profile_less(request),
        )
        await ingest.accept([source], accepted.events, len(rejected))
        return json_response(accepted.response())

    async def collect(request: Request, event_type: str, source_id: str) -> Response:
        properties = await _collected_properties(request, settings)
        try:
            payload = TrackPayload.model_validate(
                {
                    "source": {"id": source_id},
                    "events": [{"type": event_type, "properties": properties}],
                }
            )
        except ValidationError as exc:
            message = describe_validation_error(exc).replace("events.0.type", "event_type")
            raise InvalidPayload(message.replace("source.id", "source_id")) from None
        source = ingest.source(request, source_id)
        accepted = accept_track(
            payload,
            ingest.request_info(request),
            new_id=ingest.new_id,
            now=ingest.clock(),
            profile_less=True,
            protocol="collect",
        )
        await ingest.accept([source], accepted.events)
        return json_response(accepted.response())

    description = (
        "An event of type event_type for source source_id, without a profile (webhooks): the"
        " query string (GET) or the body (POST: a JSON object or a form) are its properties."
    )
    path = "/collect/{event_type}/{source_id}"
    app.get(path, responses=ERRORS, description=description, name="collect_get")(collect)
    properties = {"schema": {"type": "object", "additionalProperties": True}}
    body_doc = {"required": False, "content": {"application/json": properties}}
    app.post(
        path,
        responses=ERRORS,
        description=description,
        name="collect_post",
        openapi_extra={"requestBody": body_doc},
    )(collect)


def _profile_less(request: Request) -> bool:
    query_string: bytes = request.scope.get("query_string", b"")
    if b"profile_less" not in query_string:  # the usual case costs one search
        return False
    return request.query_params.get("profile_less", "").lower() in ("true", "1", "yes")


async def _collected_properties(request: Request, settings: Settings) -> dict[str, Any]:
    if request.method == "GET":
        properties: dict[str, Any] = dict(request.query_params)
    else:
        raw = await read_body(
            request, settings.max_body_bytes, settings.body_timeout_seconds, accept_form=True
        )
        if not raw:
            properties = {}
        elif request.headers.get("content-type", "").startswith(FORM):
            properties = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            parsed = parse_json(raw)
            if not isinstance(parsed, dict):
                raise InvalidPayload(f"expected a JSON object, got {type(parsed).__name__}")
            properties = parsed
    if has_nul(properties):
        raise InvalidPayload("a value contains a NUL character, which cannot be stored")
    return properties


# --------------------------------------------------------------------------------------------
# Segment: /v1/*
# --------------------------------------------------------------------------------------------


def _segment(app: FastAPI, ingest: Ingest) -> None:
    settings = ingest.settings

    async def receive(request: Request, kind: SegmentType | None) -> Response:
        limit = BATCH_LIMIT_BYTES if kind is None else MESSAGE_LIMIT_BYTES
        raw = await read_body(
            request, settings.max_body_bytes, settings.body_timeout_seconds, decoded_limit=limit
        )
        if len(raw) > limit:
            what = "batch request" if kind is None else "message"
            raise PayloadTooLarge(
                f"the body is {len(raw)} bytes; the limit is {limit} bytes"
                f" ({limit // 1024} KB) per {what}"
            )
        try:
            items = SegmentItems(parse_json(raw), kind)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if len(items.raw) > settings.max_events_per_request:
            raise BadRequest(
                f"batch: at most {settings.max_events_per_request} messages per request"
                f" (got {len(items.raw)})"
            )
        headers = request.headers
        key = write_key_of(headers.get("authorization"), headers.get("x-write-key"))
        source = ingest.source_by_write_key(request, key or items.write_key)
        events, rejected = segment_items(
            items,
            source_id=source.id,
            request=ingest.request_info(request),
            new_id=ingest.new_id,
            now=ingest.clock(),
        )
        if not events:
            raise reject_all(rejected)
        await ingest.accept([source], events, len(rejected))
        return json_response(
            {
                "success": True,
                "events": [e.id for e in events],
                "rejected": [r.as_dict() for r in rejected],
            }
        )

    def route(path: str, kind: SegmentType | None, described: str) -> None:
        model = SegmentBatch if kind is None else SegmentMessage

        async def handler(request: Request) -> Response:
            return await receive(request, kind)

        handler.__doc__ = described
        app.post(
            path,
            responses=ERRORS,
            name=f"segment_{path.rsplit('/', 1)[1]}",
            openapi_extra=body(
                model,
                "Segment's HTTP tracking API (application/json, text/plain;"
                " gzip Content-Encoding accepted)",
            ),
        )(handler)

    batch_doc = (
        "Segment batch (500 KB): each message is checked on its own; rejected ones are listed"
        " by index. Write key: HTTP Basic user name or writeKey in the body."
    )
    route("/v1/batch", None, batch_doc)
    route("/v1/b", None, batch_doc)
    for kind in SEGMENT_TYPES:
        described = f"Segment {kind} call (32 KB). Write key: HTTP Basic user or writeKey."
        route(f"/v1/{kind}", kind, described)
        route(f"/v1/{_SHORT[kind]}", kind, described)

    @app.get("/v1/projects/{write_key}/settings", responses={404: ERRORS[401]})
    async def segment_settings(request: Request, write_key: str) -> Response:
        """Settings for Segment's browser library, pointing it at this gateway."""
        source = source_for_write_key(ingest.sources, write_key)
        if source is None or not source.enabled:
            raise NotFound("no enabled event source has this write key")
        setattr(request.state, CORS_STATE, source)
        host = f"{request.url.netloc}/v1"
        return json_response(
            segment_settings_document(write_key, host, request.url.scheme),
            headers={"Cache-Control": "public, max-age=60"},
        )


def segment_settings_document(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """What Segment's CDN serves for a write key, reduced to its own destination."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


# --------------------------------------------------------------------------------------------
# Snowplow: tp2 and /i
# --------------------------------------------------------------------------------------------


def _snowplow(app: FastAPI, ingest: Ingest) -> None:
    settings = ingest.settings

    @app.post(
        "/com.snowplowanalytics.snowplow/tp2",
        responses=ERRORS,
        openapi_extra=body(SnowplowPayload, "Snowplow payload_data: several events"),
    )
    async def snowplow_post(request: Request) -> Response:
        """Snowplow tracker protocol, POST: each event is checked on its own; rejected ones
        are listed by index. ``aid`` (app id) names the event source."""
        parsed = parse_json(
            await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
        )
        data = parsed.get("data") if isinstance(parsed, dict) else None
        if not isinstance(data, list) or not data:
            raise BadRequest("data: expected a non-empty list of events (Snowplow payload_data)")
        if len(data) > settings.max_events_per_request:
            raise BadRequest(
                f"data: at most {settings.max_events_per_request} events per request"
                f" (got {len(data)})"
            )
        events, sources, rejected = _snowplow_events(request, ingest, data, "data.")
        if not events:
            raise reject_all(rejected)
        await ingest.accept(sources, events, len(rejected))
        return json_response(
            {"events": [e.id for e in events], "rejected": [r.as_dict() for r in rejected]}
        )

    @app.get(
        "/i",
        responses={**ERRORS, 200: {"content": {"image/gif": {}}, "description": "a 1x1 pixel"}},
        openapi_extra=query(
            ("e", True, "event kind: pv, pp, se, ue, tr, ti"),
            ("aid", True, "app id: the trackflow event source"),
            ("eid", False, "event id"),
            ("duid", False, "domain user id: the profile id"),
            ("uid", False, "user id"),
            ("url", False, "page URL"),
            ("cx", False, "contexts, base64"),
            ("ue_px", False, "self-describing event, base64"),
        ),
    )
    async def snowplow_get(request: Request) -> Response:
        """Snowplow tracker protocol, GET: one event as the query string; answers a pixel."""
        params = dict(request.query_params)
        events, sources, rejected = _snowplow_events(request, ingest, [params], "")
        if rejected:
            first = rejected[0]
            raise _item_error(first.status, first.code, first.message)
        await ingest.accept(sources, events)
        return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


def _snowplow_events(
    request: Request, ingest: Ingest, data: list[Any], prefix: str
) -> tuple[list[RawEvent], list[EventSource], list[Rejected]]:
    info, now = ingest.request_info(request), ingest.clock()
    anonymous: list[str] = []

    def anonymous_profile_id() -> str:  # one fresh id for the request's anonymous events
        if not anonymous:
            anonymous.append(ingest.new_id())
        return anonymous[0]

    events: list[RawEvent] = []
    checked: dict[str, EventSource | GatewayError] = {}
    rejected: list[Rejected] = []
    for index, params in enumerate(data):
        where = f"{prefix}{index}." if prefix else ""
        if not isinstance(params, dict):
            rejected.append(
                Rejected(index, f"{where.rstrip('.')}: expected an object of parameters")
            )
            continue
        if has_nul(params):
            rejected.append(Rejected(index, f"{where}: a value contains a NUL character"))
            continue
        try:
            event = snowplow_event(
                params,
                anonymous_profile_id=anonymous_profile_id,
                request=info,
                new_id=ingest.new_id,
                now=now,
            )
        except ValidationError as exc:
            rejected.append(Rejected(index, f"{where}{describe_validation_error(exc)}"))
            continue
        except ValueError as exc:
            rejected.append(Rejected(index, f"{where}{exc}"))
            continue
        source = checked.get(event.source_id)
        if source is None:
            try:
                source = checked[event.source_id] = ingest.source(request, event.source_id)
            except GatewayError as exc:
                source = checked[event.source_id] = exc
        if isinstance(source, GatewayError):
            rejected.append(
                Rejected(index, f"{where}aid: {source.message}", source.status, source.code)
            )
            continue
        events.append(event)
    sources = [s for s in checked.values() if isinstance(s, EventSource)]
    return events, sources, rejected


def _item_error(status: int, code: str, message: str) -> GatewayError:
    error = GatewayError(message)
    error.status, error.code = status, code
    return error
