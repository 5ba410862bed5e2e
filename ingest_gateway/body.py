"""Reading a request body within the size limit and parsing it as JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from ingest_gateway.errors import (
    BadRequest,
    InvalidPayload,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from schemas.codec import MAX_DEPTH, too_deep

__all__ = ["read_json_body"]

_ACCEPTED_TYPES = ("application/json", "text/plain", "")


async def read_json_body(request: Request, limit: int, timeout: float = 10.0) -> Any:
    _check_content_type(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            body = await _read_limited(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g}s") from None
    if not body:
        raise BadRequest("empty body; expected a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if too_deep(body, parsed):
        raise InvalidPayload(f"the JSON nests deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in body and _has_nul(parsed):
        raise InvalidPayload("a string contains a NUL character (\\u0000), which cannot be stored")
    return parsed


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _check_content_type(header: str) -> None:
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type not in _ACCEPTED_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {media_type!r} is not accepted; send application/json or text/plain"
        )


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
