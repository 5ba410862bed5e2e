"""CORS per event source.

A browser may call the gateway from an origin that some enabled source allows:

* preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no body, so the
  source is not known yet: it is answered 204 when the origin is allowed by any enabled
  source (the union of their ``allowed_origins``; ``*`` allows all), else 403;
* the request itself names its source (``source.id`` for ``/track``, the path for
  ``/collect``, the write key for Segment, ``aid`` for Snowplow) and the route refuses an
  origin that source does not allow with 403 before anything is published;
* the response carries ``Access-Control-Allow-Origin`` (the origin itself, with
  ``Vary: Origin`` and ``Access-Control-Allow-Credentials``, which Snowplow's tracker needs)
  when the origin is allowed by the request's source, or — for answers given before the
  source is known, such as a malformed body — by any enabled source; ``Retry-After`` is
  exposed to the page. Other origins get no CORS headers, so the browser shows the page
  nothing.

Requests without an ``Origin`` (servers, SDKs) are not browser requests and pass as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.config import EventSource

__all__ = ["CORS_STATE", "SourceCors", "origin_allowed_by_any"]

CORS_STATE = "cors_source"  # request.state attribute: the source the route checked
_METHODS = b"GET, POST, OPTIONS"
_DEFAULT_HEADERS = b"content-type, content-encoding, authorization, x-write-key"
_MAX_AGE = b"600"


def origin_allowed_by_any(sources: Iterable[EventSource], origin: str) -> bool:
    return any(s.enabled and s.allows_origin(origin) for s in sources)


class SourceCors:
    """Pure ASGI middleware: nothing is done for requests without an ``Origin`` header."""

    def __init__(self, app: ASGIApp, sources: Callable[[], Iterable[EventSource]]) -> None:
        self.app = app
        self.sources = sources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, origin, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and self._allowed(scope, origin):
                headers = list(message.get("headers", []))
                headers += _allow(origin)
                headers.append((b"access-control-expose-headers", b"Retry-After"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allowed(self, scope: Scope, origin: str) -> bool:
        checked = scope.get("state", {}).get(CORS_STATE)
        if isinstance(checked, EventSource):
            return checked.allows_origin(origin)
        return origin_allowed_by_any(self.sources(), origin)

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        if not origin_allowed_by_any(self.sources(), origin):
            message = f"origin {origin[:200]!r} is not allowed by any enabled event source"
            error = {"status": 403, "code": "origin_not_allowed", "message": message}
            body = orjson.dumps({"error": error})
            await _respond(send, 403, [(b"content-type", b"application/json")], body)
            return
        requested = _header(scope, b"access-control-request-headers")
        headers = [
            *_allow(origin),
            (b"access-control-allow-methods", _METHODS),
            (
                b"access-control-allow-headers",
                requested.encode() if requested else _DEFAULT_HEADERS,
            ),
            (b"access-control-max-age", _MAX_AGE),
        ]
        await _respond(send, 204, headers, b"")


def _allow(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1", "replace")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
