"""Referrer host, path and medium; the table; internal referrers; where it is read from."""

from __future__ import annotations

from typing import Any

import pytest

from processors.enrich import EnrichContext, enrich
from processors.enrich.referrers import HOSTS, classify_host
from schemas.enrichment import EnrichOptions, Referrer
from tests.unit.enrich.helpers import make_event

PAGE = {"url": "https://shop.example.com/products?id=1"}


def referrer_of(
    context: dict[str, Any],
    options: EnrichOptions | None = None,
    *,
    referer: str | None = None,
    origin: str | None = None,
) -> Referrer | None:
    ctx = EnrichContext(options=options or EnrichOptions())
    event = make_event(context=context, referer=referer, origin=origin)
    return enrich(event, ctx).enrichment.referrer


@pytest.mark.parametrize(
    ("url", "medium", "source"),
    [
        ("https://www.google.com/", "search", "Google"),
        ("https://www.google.co.uk/search?q=shoes", "search", "Google"),
        ("https://google.com.br/", "search", "Google"),
        ("https://yandex.ru/search/?text=x", "search", "Yandex"),
        ("https://www.bing.com/search?q=x", "search", "Bing"),
        ("https://uk.search.yahoo.com/", "search", "Yahoo"),
        ("https://duckduckgo.com/", "search", "DuckDuckGo"),
        ("android-app://com.google.android.googlequicksearchbox/", "search", "Google"),
        ("https://l.facebook.com/l.php?u=x", "social", "Facebook"),
        ("https://m.facebook.com/", "social", "Facebook"),
        ("https://t.co/abc", "social", "Twitter"),
        ("https://www.linkedin.com/feed/", "social", "LinkedIn"),
        ("https://out.reddit.com/t3_x", "social", "Reddit"),
        ("https://mail.google.com/mail/u/0/", "email", "Gmail"),
        ("android-app://com.google.android.gm/", "email", "Gmail"),
        ("https://outlook.live.com/mail/0/", "email", "Outlook"),
        ("https://webmail.example.org/", "email", None),
        ("https://www.googleadservices.com/pagead/aclk?x", "paid", "Google Ads"),
        ("https://ad.doubleclick.net/ddm/clk/1", "paid", "Google Ads"),
        ("https://blog.example.org/post", "unknown", None),
        ("https://docs.google.com/document/d/1", "unknown", None),
        ("https://google.example.org/", "unknown", None),
    ],
)
def test_the_medium_table(url: str, medium: str, source: str | None) -> None:
    found = referrer_of({"page": {**PAGE, "referrer": url}})
    assert found is not None
    assert (found.medium, found.source) == (medium, source)


def test_host_and_path_but_not_the_query() -> None:
    found = referrer_of({"page": {**PAGE, "referrer": "https://Blog.Example.org:8443/a/b?x=1#f"}})
    assert found == Referrer(host="blog.example.org", path="/a/b", medium="unknown")


@pytest.mark.parametrize(
    "referrer",
    ["https://shop.example.com/cart", "https://www.shop.example.com/", "shop.example.com/x"],
)
def test_the_pages_own_host_is_internal(referrer: str) -> None:
    found = referrer_of({"page": {**PAGE, "referrer": referrer}})
    assert found is not None
    assert found.medium == "internal"


def test_configured_internal_hosts_and_their_subdomains() -> None:
    options = EnrichOptions(internal_hosts=("Example.COM",))
    for host in ("example.com", "checkout.example.com"):
        found = referrer_of({"page": {**PAGE, "referrer": f"https://{host}/"}}, options)
        assert found is not None
        assert found.medium == "internal", host
    found = referrer_of({"page": {**PAGE, "referrer": "https://notexample.com/"}}, options)
    assert found is not None
    assert found.medium == "unknown"


def test_without_a_page_url_the_origin_is_the_page() -> None:
    found = referrer_of(
        {"page": {"referrer": "https://shop.example.com/a"}}, origin="https://shop.example.com"
    )
    assert found is not None
    assert found.medium == "internal"


def test_tracardi_referer_object() -> None:
    found = referrer_of({"page": {**PAGE, "referer": {"host": "www.google.de", "query": "x"}}})
    assert found == Referrer(host="www.google.de", medium="search", source="Google")


def test_tracardi_without_a_referrer_does_not_fall_back_to_the_header() -> None:
    context = {"page": {**PAGE, "referer": {"host": None, "query": None}}}
    assert referrer_of(context, referer="https://www.google.com/") is None


def test_the_referer_header_when_the_context_says_nothing() -> None:
    found = referrer_of({}, referer="https://www.bing.com/search?q=x")
    assert found == Referrer(host="www.bing.com", path="/search", medium="search", source="Bing")


def test_the_referer_header_is_ignored_when_it_is_the_page_itself() -> None:
    assert referrer_of({"page": dict(PAGE)}, referer=PAGE["url"] + "#top") is None


def test_the_context_wins_over_the_header() -> None:
    found = referrer_of(
        {"page": {**PAGE, "referrer": "https://t.co/x"}}, referer="https://www.bing.com/"
    )
    assert found is not None
    assert found.source == "Twitter"


@pytest.mark.parametrize("value", ["", "   ", "not a url at all", "http://[::1", 42, ["x"]])
def test_no_usable_referrer_gives_none(value: object) -> None:
    assert referrer_of({"page": {**PAGE, "referrer": value}}) is None


def test_table_entries_are_lower_case_hosts() -> None:
    assert all(host == host.lower().strip(".") and " " not in host for host in HOSTS)
    assert classify_host("www.facebook.com") == ("social", "Facebook")
