"""The campaign enricher: UTM parameters and ad click ids.

Where UTM parameters come from, first match wins (whole, never mixed across places):

1. ``context.utm`` — Tracardi's tracker (``{source, medium, campaign, term, content}``);
   ``utm_*`` names are accepted too;
2. ``context.campaign`` — Segment (``{name, source, medium, term, content}``);
3. the page URL's query (``context.page.url``), then its fragment's query.

Click ids: the configured parameters in order (``EnrichOptions.click_ids``); the first one
present — in the page URL or in either object above — wins and names the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from processors.enrich.fields import scalar_text
from processors.enrich.page import page_url, parse_url
from schemas import RawEvent
from schemas.enrichment import Campaign

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = ["campaign", "utm_fields"]

_FROM_QUERY = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
    "utm_id": "id",
}
_NOTHING: Mapping[str, str] = {}
_Utm = tuple[tuple[str, str], ...]
_Click = tuple[str, str, str]  # value, parameter, network
_ClickIds = tuple[tuple[str, str], ...]  # (parameter, network) in order: EnrichContext.click_ids
_FROM_OBJECT = {
    **_FROM_QUERY,
    "source": "source",
    "medium": "medium",
    "campaign": "name",
    "name": "name",
    "term": "term",
    "content": "content",
    "id": "id",
}


def utm_fields(values: Mapping[str, object], names: Mapping[str, str]) -> dict[str, str]:
    """:class:`Campaign` UTM fields found in ``values`` under any of ``names``."""
    found: dict[str, str] = {}
    for name, raw in values.items():
        field = names.get(name)
        if field is not None and field not in found:
            value = scalar_text(raw)
            if value is not None:
                found[field] = value
    return found


def campaign(event: RawEvent, context: EnrichContext) -> Campaign | None:
    url = page_url(event)
    objects = [
        {str(key).lower(): value for key, value in candidate.items()}
        for candidate in (event.context.get("utm"), event.context.get("campaign"))
        if isinstance(candidate, dict) and candidate
    ]
    if not objects:  # the common case: everything comes from the page URL
        return None if url is None else _url_campaign(url, context.click_ids)
    parsed = parse_url(url)
    query = parsed.query if parsed is not None else _NOTHING
    utm: _Utm = ()
    for values in objects:
        utm = tuple(utm_fields(values, _FROM_OBJECT).items())
        if utm:
            break
    else:
        utm = _url_utm(query)
    return _found(utm, _click_id(context.click_ids, [query, *objects]))


@lru_cache(maxsize=4096)
def _url_campaign(url: str, click_ids: _ClickIds) -> Campaign | None:
    """The campaign of a page URL alone (cached: landing pages repeat)."""
    parsed = parse_url(url)
    if parsed is None or not parsed.query:
        return None
    return _found(_url_utm(parsed.query), _click_id(click_ids, [parsed.query]))


def _url_utm(query: Mapping[str, str]) -> _Utm:
    return tuple(utm_fields(query, _FROM_QUERY).items())


def _found(utm: _Utm, click: _Click | None) -> Campaign | None:
    return None if not utm and click is None else _campaign(utm, click)


@lru_cache(maxsize=4096)
def _campaign(utm: _Utm, click: _Click | None) -> Campaign:
    """The (shared, frozen) :class:`Campaign` for these values."""
    if click is None:
        return Campaign(**dict(utm))
    value, param, network = click
    return Campaign(**dict(utm), click_id=value, click_id_param=param, network=network)


def _click_id(click_ids: _ClickIds, sources: list[Mapping[str, object]]) -> _Click | None:
    """The first configured click-id parameter with a usable value in any of ``sources``."""
    for param, network in click_ids:
        for values in sources:
            if param in values:
                value = scalar_text(values[param])
                if value is not None:
                    return value, param, network
    return None
