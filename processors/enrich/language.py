"""The language and time-zone enrichers.

Language, first match wins: ``context.locale`` (Segment), ``context.language``, Tracardi's
``context.browser.local.browser.language`` (or ``context.browser.browser.language`` of older
trackers), then the request's ``Accept-Language`` (the highest-q tag; the first of equals).
Tags are normalised to BCP 47 case (``en_us`` -> ``en-US``, ``zh-hant-tw`` -> ``zh-Hant-TW``).

Time zone: ``context.timezone`` (Segment), then Tracardi's ``context.time.tz``; an IANA-style
name (``Europe/Berlin``, ``UTC``, ``Etc/GMT+2``), checked by shape, not against a tz database.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from processors.enrich.fields import dig, text
from schemas import RawEvent

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = [
    "language",
    "normalize_language_tag",
    "normalize_time_zone",
    "preferred_language",
    "timezone",
]

_TAG = re.compile(r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8}){0,7}$")
_TIME_ZONE = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9_+\-]{0,30})(?:/[A-Za-z0-9][A-Za-z0-9_+\-]{0,30}){0,2}$"
)
_MAX_TAG = 35
_MAX_HEADER_ITEMS = 32
_MAX_HEADER = 1024  # more is not a browser's header; what follows is ignored


def language(event: RawEvent, context: EnrichContext) -> str | None:
    ctx = event.context
    for candidate in (
        ctx.get("locale"),
        ctx.get("language"),
        dig(ctx, "browser", "local", "browser", "language"),
        dig(ctx, "browser", "browser", "language"),
    ):
        tag = normalize_language_tag(text(candidate, _MAX_TAG))
        if tag is not None:
            return tag
    return preferred_language(event.request.accept_language)


def timezone(event: RawEvent, context: EnrichContext) -> str | None:
    for candidate in (event.context.get("timezone"), dig(event.context, "time", "tz")):
        zone = normalize_time_zone(text(candidate, 64))
        if zone is not None:
            return zone
    return None


@lru_cache(maxsize=1024)
def normalize_language_tag(tag: str | None) -> str | None:
    """A BCP 47-shaped tag in canonical case, or None (``*``, private use, garbage)."""
    if not tag or len(tag) > _MAX_TAG:
        return None
    tag = tag.strip().replace("_", "-")
    if not _TAG.match(tag):
        return None
    primary, *rest = tag.split("-")
    subtags = [primary.lower()]
    for position, subtag in enumerate(rest):
        if position == 0 and len(subtag) == 4 and subtag.isalpha():
            subtags.append(subtag.title())  # script: Hant, Latn
        elif len(subtag) == 2 and subtag.isalpha():
            subtags.append(subtag.upper())  # region: US, GB
        else:
            subtags.append(subtag.lower())
    return "-".join(subtags)


def preferred_language(header: str | None) -> str | None:
    """The tag with the highest q in an ``Accept-Language`` header (the first of equals)."""
    if not header:
        return None
    return _preferred_language(header[:_MAX_HEADER])


@lru_cache(maxsize=1024)
def _preferred_language(header: str) -> str | None:
    best: str | None = None
    best_q = 0.0
    for item in header.split(",", _MAX_HEADER_ITEMS)[:_MAX_HEADER_ITEMS]:
        tag, _, params = item.partition(";")
        q = _quality(params)
        if q <= best_q:
            continue
        normalized = normalize_language_tag(tag.strip())
        if normalized is not None:
            best, best_q = normalized, q
    return best


@lru_cache(maxsize=1024)
def normalize_time_zone(zone: str | None) -> str | None:
    if not zone or not _TIME_ZONE.match(zone):
        return None
    return zone


def _quality(params: str) -> float:
    """The ``q`` parameter (1 when absent); 0 when it is not a number in [0, 1]."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if math.isfinite(q) and 0.0 <= q <= 1.0 else 0.0
    return 1.0
