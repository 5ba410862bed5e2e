"""Reading a request body within the size limit and parsing it as JSON."""

from __future__ import annotations

import asyncio
import zlib
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

__all__ = ["FORM", "has_nul", "parse_json", "read_body", "read_json_body"]

_ACCEPTED_TYPES = ("application/json", "text/plain", "")
FORM = "application/x-www-form-urlencoded"


async def read_json_body(request: Request, limit: int, timeout: float = 10.0) -> Any:
    return parse_json(await read_body(request, limit, timeout))


async def read_body(
    request: Request,
    limit: int,
    timeout: float = 10.0,
    *,
    decoded_limit: int | None = None,
    accept_form: bool = False,
) -> bytes:
    """The body within ``limit`` bytes as sent; a gzip- or deflate-encoded body is decoded
    within ``decoded_limit`` (default ``limit``), so a small bomb cannot grow in memory."""
    headers = request.headers
    _check_content_type(headers.get("content-type", ""), accept_form)
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            body = await _read_limited(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g}s") from None
    encoding = headers.get("content-encoding")
    if encoding is not None and body:
        body = _decode(body, encoding.strip().lower(), decoded_limit or limit)
    return body


def _decode(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedMediaType(
            f"content encoding {encoding!r} is not accepted; send gzip, deflate or identity"
        )
    wbits = zlib.MAX_WBITS | 32  # gzip or zlib header, detected
    decoder = zlib.decompressobj(wbits)
    try:
        decoded = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(decoded) > limit:
        raise PayloadTooLarge(f"the decoded body exceeds the limit of {limit} bytes")
    if not decoder.eof:
        raise BadRequest(f"body is not valid {encoding}: the stream is truncated")
    return decoded


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON: 400 when empty or malformed, 422 when too deep or with NUL."""
    if not body:
        raise BadRequest("empty body; expected a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if too_deep(body, parsed):
        raise InvalidPayload(f"the JSON nests deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in body and has_nul(parsed):
        raise InvalidPayload("a string contains a NUL character (\\u0000), which cannot be stored")
    return parsed


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _check_content_type(header: str, accept_form: bool = False) -> None:
    media_type = header.split(";", 1)[0].strip().lower()
    if accept_form and media_type == FORM:
        return
    if media_type not in _ACCEPTED_TYPES and not media_type.endswith("+json"):
        also = f", {FORM}" if accept_form else ""
        raise UnsupportedMediaType(
            f"content type {media_type!r} is not accepted; send application/json or text/plain"
            + also
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
