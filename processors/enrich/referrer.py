"""The referrer enricher: the referring host and path, and its medium.

Where the referrer comes from, first match wins:

1. ``context.page.referer`` — Tracardi's tracker sends ``{"host": ..., "query": ...}`` (and
   ``host: null`` when the visitor came from the same site or from nowhere); a URL string is
   read too;
2. ``context.page.referrer`` — Segment (a URL);
3. the request's ``Referer`` header, only when the event context says nothing about the
   referrer, and not when it is the page itself (a browser sends the current page there).

The medium is ``internal`` when the referring host is the page's host (from
``context.page.url``, else the request's Origin) or one of the source's ``internal_hosts``
(or a subdomain of one); otherwise it comes from :mod:`processors.enrich.referrers`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from processors.enrich.fields import dig, text
from processors.enrich.page import MAX_URL, page_host, page_url, parse_url
from processors.enrich.referrers import classify_host
from schemas import RawEvent
from schemas.enrichment import Referrer

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = ["is_internal", "referrer"]

_MAX_PATH = 1024


def referrer(event: RawEvent, context: EnrichContext) -> Referrer | None:
    found = _referring(event)
    if found is None:
        return None
    host, path = found
    return _classified(host, path, page_host(event), context.options.internal_hosts)


@lru_cache(maxsize=8192)
def _classified(
    host: str, path: str | None, page: str | None, internal_hosts: tuple[str, ...]
) -> Referrer:
    """The (shared, frozen) :class:`Referrer`; cached, since referrers repeat."""
    if is_internal(host, page, internal_hosts):
        return Referrer(host=host, path=path, medium="internal")
    entry = classify_host(host)
    if entry is None:
        return Referrer(host=host, path=path, medium="unknown")
    medium, source = entry
    return Referrer(host=host, path=path, medium=medium, source=source)


def is_internal(host: str, page: str | None, internal_hosts: tuple[str, ...]) -> bool:
    """Same site as the page (``www.`` ignored), or one of ``internal_hosts`` / a subdomain."""
    bare = host.removeprefix("www.")
    if page is not None and bare == page.removeprefix("www."):
        return True
    return any(host == known or host.endswith("." + known) for known in internal_hosts)


def _referring(event: RawEvent) -> tuple[str, str | None] | None:
    page = dig(event.context, "page")
    if isinstance(page, dict) and ("referer" in page or "referrer" in page):
        for value in (page.get("referer"), page.get("referrer")):
            found = _from_value(value)
            if found is not None:
                return found
        return None
    header = text(event.request.referer, MAX_URL)
    if header is None or _same_page(header, page_url(event)):
        return None
    return _from_url(header)


def _from_value(value: object) -> tuple[str, str | None] | None:
    if isinstance(value, dict):  # Tracardi: {"host": "www.google.com", "query": ...}
        url = text(value.get("url"), MAX_URL)
        if url is not None:
            return _from_url(url)
        parsed = parse_url(text(value.get("host"), MAX_URL))
        if parsed is None or parsed.host is None:
            return None
        return parsed.host, text(value.get("path"), _MAX_PATH)
    url = text(value, MAX_URL)
    return _from_url(url) if url else None


def _from_url(url: str) -> tuple[str, str | None] | None:
    parsed = parse_url(url)
    if parsed is None or parsed.host is None:
        return None
    return parsed.host, parsed.path


def _same_page(header: str, page: str | None) -> bool:
    return page is not None and header.partition("#")[0] == page.partition("#")[0]
