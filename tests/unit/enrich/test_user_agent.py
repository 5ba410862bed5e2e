"""Device flags for well-known user agents, where the user agent is read from, the cache."""

from __future__ import annotations

import pytest

from processors.enrich import CachedUserAgentParser, EnrichContext, enrich
from schemas import RawEvent
from schemas.enrichment import Device
from tests.unit.enrich.helpers import make_event

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.144 Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)

parse = CachedUserAgentParser()


@pytest.mark.parametrize(
    ("user_agent", "flags"),
    [
        (IPHONE, "mobile"),
        (IPAD, "tablet"),
        (ANDROID_PHONE, "mobile"),
        (ANDROID_TABLET, "tablet"),
        (WINDOWS_CHROME, "pc"),
        (MAC_SAFARI, "pc"),
        (LINUX_FIREFOX, "pc"),
        (GOOGLEBOT, "bot"),
        (GOOGLEBOT_SMARTPHONE, "bot"),
        (HEADLESS, "bot"),
        ("curl/8.4.0", ""),
        ("", ""),
    ],
)
def test_exactly_one_kind_of_device_or_none(user_agent: str, flags: str) -> None:
    found = parse(user_agent)
    kinds = {"bot": found.is_bot, "mobile": found.is_mobile, "tablet": found.is_tablet}
    kinds["pc"] = found.is_pc
    assert {kind for kind, value in kinds.items() if value} == ({flags} if flags else set())


def test_families_versions_brand_and_model() -> None:
    assert parse(IPHONE) == Device(
        browser="Mobile Safari",
        browser_version="17.1",
        os="iOS",
        os_version="17.1",
        device="iPhone",
        brand="Apple",
        model="iPhone",
        is_mobile=True,
    )
    windows = parse(WINDOWS_CHROME)
    assert (windows.browser, windows.browser_version) == ("Chrome", "120.0.0.0")
    assert (windows.os, windows.os_version, windows.device) == ("Windows", "10", "Other")


def test_the_cache_returns_the_same_result_and_is_bounded() -> None:
    small = CachedUserAgentParser(maxsize=2)
    first = small(IPHONE)
    assert small(IPHONE) is first
    small(IPAD)
    small(WINDOWS_CHROME)  # evicts IPHONE
    assert small(IPHONE) is not first
    assert small(IPHONE) == first


def test_overlong_user_agents_are_cut_before_parsing() -> None:
    assert parse(IPHONE + " x" * 5000) == parse((IPHONE + " x" * 5000)[:2048])


@pytest.mark.parametrize(
    "event",
    [
        make_event(user_agent=IPHONE),
        make_event(context={"userAgent": IPHONE}),
        make_event(context={"browser": {"local": {"browser": {"userAgent": IPHONE}}}}),
    ],
    ids=["header", "segment-context", "tracardi-context"],
)
def test_the_user_agent_comes_from_the_header_or_the_context(event: RawEvent) -> None:
    found = enrich(event, EnrichContext()).enrichment.device
    assert found is not None
    assert found.device == "iPhone"


def test_the_header_wins_over_the_context() -> None:
    event = make_event(user_agent=WINDOWS_CHROME, context={"userAgent": IPHONE})
    found = enrich(event, EnrichContext()).enrichment.device
    assert found is not None
    assert found.browser == "Chrome"


def test_no_user_agent_no_device() -> None:
    assert enrich(make_event(), EnrichContext()).enrichment.device is None
