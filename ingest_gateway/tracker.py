"""The browser tracker the gateway serves at ``/tracker.js``: read once at start-up, then
answered from memory with an ETag (``304`` when the client has it) and, where the client
takes it, gzip-compressed."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response

__all__ = ["TRACKER_JS", "StaticAsset", "accepts_gzip", "etag_matches"]

TRACKER_JS = Path(__file__).with_name("static") / "tracker.js"


@dataclass(frozen=True)
class StaticAsset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str
    cache_control: str

    @classmethod
    def read(
        cls,
        path: Path = TRACKER_JS,
        media_type: str = "application/javascript; charset=utf-8",
        cache_control: str = "public, max-age=3600",
    ) -> StaticAsset:
        body = path.read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        return cls(body, gzip.compress(body, 9, mtime=0), etag, media_type, cache_control)

    def response(self, if_none_match: str | None, accept_encoding: str | None) -> Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": self.cache_control,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if etag_matches(if_none_match, self.etag):
            return Response(status_code=304, headers=headers)
        if accepts_gzip(accept_encoding):
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped, headers=headers, media_type=self.media_type)
        return Response(self.body, headers=headers, media_type=self.media_type)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison: ``*``, or any listed tag equal to ``etag`` (``W/`` aside)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` lists ``gzip`` (or ``*``) without ``q=0``."""
    for item in (accept_encoding or "").lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "*"):
            continue
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False
