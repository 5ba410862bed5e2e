"""Shared by the enrich tests: test-data paths and an event factory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import RawEvent, RequestInfo

__all__ = ["ANONYMOUS_DB", "ASN_DB", "CITY_DB", "CITY_SOURCE", "MAXMIND", "make_event"]

MAXMIND = Path(__file__).resolve().parents[2] / "data" / "maxmind"
CITY_DB = MAXMIND / "GeoIP2-City-Test.mmdb"
CITY_SOURCE = MAXMIND / "GeoIP2-City-Test.json"
ASN_DB = MAXMIND / "GeoLite2-ASN-Test.mmdb"
ANONYMOUS_DB = MAXMIND / "GeoIP2-Anonymous-IP-Test.mmdb"


def make_event(
    *,
    context: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    referer: str | None = None,
    origin: str | None = None,
    accept_language: str | None = None,
) -> RawEvent:
    """A page-view event with this context, properties and request info."""
    return RawEvent(
        id="ev-1",
        type="page-view",
        source_id="web",
        profile_id="pr-1",
        received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        context=context or {},
        properties=properties or {},
        request=RequestInfo(
            ip=ip,
            user_agent=user_agent,
            referer=referer,
            origin=origin,
            accept_language=accept_language,
        ),
    )
