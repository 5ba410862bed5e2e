"""URLs: the page an event happened on (``context.page.url``) and referrers.

Parsing is cached per URL string (:func:`parse_url`): landing pages, referrers and Origin
headers repeat across events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

from processors.enrich.fields import dig, text
from schemas import RawEvent

__all__ = ["MAX_URL", "Url", "page_host", "page_url", "parse_url"]

MAX_URL = 4096
_MAX_PATH = 1024
_MAX_PARAMS = 100
_MAX_HOST = 253  # DNS's limit
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
_HOST = re.compile(r"^[^\s/\\?#@%<>\"'`{}|^,;=]+$")  # names (IDN too) and IPs; no spaces


@dataclass(frozen=True, slots=True)
class Url:
    """What the enrichers use of a URL.

    ``host``: lower-case, no port, brackets or trailing dot; None unless it looks like a host
    name or an IP (no spaces or URL punctuation). ``query``: lower-case parameter
    names, first value wins, blanks dropped; parameters after a ``?`` in the fragment
    (``/#/landing?utm_source=x``, single-page apps) are read too, after the query's.
    """

    host: str | None
    path: str | None
    query: Mapping[str, str]


def page_url(event: RawEvent) -> str | None:
    """``context.page.url`` (Tracardi and Segment both put the page URL there)."""
    return text(dig(event.context, "page", "url"), MAX_URL)


def page_host(event: RawEvent) -> str | None:
    """The page's host, from its URL or else from the request's Origin header."""
    for url in (page_url(event), event.request.origin):
        parsed = parse_url(url)
        if parsed is not None and parsed.host is not None:
            return parsed.host
    return None


def parse_url(url: str | None) -> Url | None:
    """The parts of ``url``; without a scheme (``example.com/a``) it is read as
    ``//example.com/a``. None when there is no URL, it is too long or cannot be parsed."""
    if not url or len(url) > MAX_URL:
        return None  # checked before the cache, so that no huge string is kept in it
    return _parse_url(url)


@lru_cache(maxsize=4096)
def _parse_url(url: str) -> Url | None:
    if "//" not in url[:12] and ":" not in url.partition("/")[0]:
        url = "//" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. "http://[::1" (unbalanced brackets)
        return None
    query = _NO_PARAMS
    fragment_query = parts.fragment.partition("?")[2]
    if parts.query or fragment_query:
        query = MappingProxyType(_params(parts.query, fragment_query))
    if host is not None:
        host = host.rstrip(".")
        if len(host) > _MAX_HOST or not _HOST.match(host):
            host = None
    return Url(
        host=host,
        path=parts.path[:_MAX_PATH] or None,
        query=query,
    )


def _params(*queries: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for query in queries:
        if query:
            for name, value in parse_qsl(query)[:_MAX_PARAMS]:
                params.setdefault(name.lower(), value)
    return params
