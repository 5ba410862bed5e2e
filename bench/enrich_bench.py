"""The enrich stage alone, on one core: ``python -m bench.enrich_bench [--seconds N]``.

Events look like a website's traffic: ~200 real user-agent strings with Zipf-like popularity,
client IPs that repeat (a visitor sends several events) drawn from MaxMind test-database
networks, public IPv4/IPv6 addresses and a few private ones, page URLs of which many carry UTM
parameters and some a click id, referrers from search, social, email and other sites.

GeoIP: the City database is the GeoLite2 file of ``maxminddb-geolite2`` (real data, real tree
depth) unless ``--city`` names another; ASN and Anonymous-IP are MaxMind's test databases.
Two figures are printed: with the per-address geo cache (how the stage runs), and with the
cache off (every event reads the databases: the worst case for IPs never seen before).

The events are kept encoded, as they arrive from Kafka, and decoded a window at a time
outside the timed part: the stage enriches events it has just decoded, not ones spread over
a 100 MB array built minutes earlier (which made the figure swing with the host's memory
traffic). Decoding and encoding are the Kafka side of the stage, measured by the pipeline
benchmark, not here.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.enrich import EnrichContext, GeoIP2Lookup, default_city_database, enrich
from schemas import RawEvent, RequestInfo, decode_raw_event, encode
from schemas.enrichment import EnrichOptions

__all__ = ["Rate", "main", "make_events", "run", "user_agents"]

MAXMIND = Path(__file__).resolve().parents[1] / "tests" / "data" / "maxmind"
SEED = 20260101

_WEBKIT = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"


def _chrome(platform: str, version: int, tail: str = "Safari/537.36") -> str:
    return f"{platform} AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version}.0.0.0 {tail}"


def _firefox(platform: str, version: int) -> str:
    return f"Mozilla/5.0 ({platform}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"


_BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
]
_ANDROID_MODELS = ["K", "Pixel 8", "Pixel 7a", "SM-S918B", "SM-A546B", "moto g(60)", "2201117TG"]


def user_agents() -> list[str]:
    """~200 real-world user-agent strings: browsers, versions, platforms, in-app, bots."""
    found: list[str] = []
    for v in range(110, 132):
        model = _ANDROID_MODELS[v % len(_ANDROID_MODELS)]
        found += [
            _chrome(_WINDOWS, v),
            _chrome(_MAC, v),
            _chrome("Mozilla/5.0 (X11; Linux x86_64)", v),
            _chrome(_WINDOWS, v, f"Safari/537.36 Edg/{v}.0.0.0"),
            _chrome(
                f"Mozilla/5.0 (Linux; Android {10 + v % 5}; {model})", v, "Mobile Safari/537.36"
            ),
        ]
    for major, minor in itertools.product(range(15, 19), range(0, 6)):
        found.append(
            f"Mozilla/5.0 (iPhone; CPU iPhone OS {major}_{minor} like Mac OS X) {_WEBKIT} "
            f"Version/{major}.{minor} Mobile/15E148 Safari/604.1"
        )
        if minor % 2 == 0:
            found.append(
                f"Mozilla/5.0 (iPad; CPU OS {major}_{minor} like Mac OS X) {_WEBKIT} "
                f"Version/{major}.{minor} Mobile/15E148 Safari/604.1"
            )
            found.append(f"{_MAC} {_WEBKIT} Version/{major}.{minor} Safari/605.1.15")
    for v in range(115, 131):
        found.append(_firefox("Windows NT 10.0; Win64; x64", v))
        if v % 3 == 0:
            found += [
                _firefox("Macintosh; Intel Mac OS X 10.15", v),
                _firefox("X11; Linux x86_64", v),
            ]
    for v in range(20, 27):
        found.append(
            f"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like "
            f"Gecko) SamsungBrowser/{v}.0 Chrome/115.0.0.0 Mobile Safari/537.36"
        )
    found += [
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) {_WEBKIT} Mobile/15E148 "
        "Instagram 334.0.4.32.98 (iPhone15,2; iOS 17_5; en_US; en; scale=3.00; 1179x2556)",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) {_WEBKIT} Mobile/15E148 "
        "[FBAN/FBIOS;FBAV/466.0.0.40.107;FBBV/600000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS]",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        *_BOTS,
    ]
    return found


def _zipf(rng: random.Random, items: Sequence[str], count: int, s: float = 1.1) -> list[str]:
    order = list(items)
    rng.shuffle(order)
    weights = [1 / (rank**s) for rank in range(1, len(order) + 1)]
    return rng.choices(order, weights=weights, k=count)


def _client_ips(rng: random.Random, count: int) -> list[str]:
    """Distinct client addresses: test-database networks, public v4/v6, a few private."""
    test_db = [
        "81.2.69.142", "81.2.69.160", "216.160.83.58", "89.160.20.115", "67.43.156.7",
        "175.16.199.5", "202.196.224.9", "149.101.100.3", "2.125.160.217", "214.78.120.5",
        "1.128.0.9", "12.81.92.7", "1.2.0.9", "186.30.236.3", "71.160.223.8",
        "2001:480:10::5", "2001:218::9", "2a02:d000::1",
    ]  # fmt: skip
    found: list[str] = list(test_db)
    while len(found) < count:
        pick = rng.random()
        if pick < 0.85:
            first = rng.choice([5, 23, 31, 37, 46, 62, 77, 78, 79, 80, 82, 84, 86, 88, 90, 91, 92])
            found.append(
                f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
        elif pick < 0.95:
            found.append(
                f"2a0{rng.randrange(10)}:{rng.randrange(1 << 16):x}::{rng.randrange(1 << 16):x}"
            )
        else:
            found.append(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return found


def make_events(count: int, seed: int = SEED) -> list[RawEvent]:
    rng = random.Random(seed)
    agents = _zipf(rng, user_agents(), count)
    ips = _zipf(rng, _client_ips(rng, 5_000), count, s=0.9)
    languages = ["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", "pl-PL", "es-419"]
    referrers = [
        "https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
        "https://l.facebook.com/", "https://t.co/x1", "https://www.linkedin.com/feed/",
        "https://mail.google.com/", "https://news.example.org/article/1",
        "https://shop.example.com/category/shoes", None, None, None,
    ]  # fmt: skip
    received = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[RawEvent] = []
    for index in range(count):
        url = f"https://shop.example.com/p/{rng.randrange(400)}"
        roll = rng.random()
        if roll < 0.35:
            url += "?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
        elif roll < 0.45:
            url += f"?utm_source=google&utm_medium=cpc&gclid=Cj0KCQ{rng.randrange(10**9)}"
        elif roll < 0.5:
            url += f"?fbclid=IwAR{rng.randrange(10**9)}"
        page: dict[str, object] = {"url": url, "title": "Product"}
        referrer = rng.choice(referrers)
        if referrer is not None:
            page["referrer"] = referrer
        events.append(
            RawEvent(
                id=f"ev-{index}",
                type="page-view",
                source_id="web",
                profile_id=f"pr-{index % 9973}",
                session_id=f"se-{index % 3331}",
                received_at=received,
                properties={"sku": f"SKU-{rng.randrange(1000)}", "price": 19.99},
                context={"page": page, "timezone": "Europe/Berlin", "locale": None},
                request=RequestInfo(
                    ip=ips[index],
                    user_agent=agents[index],
                    origin="https://shop.example.com",
                    accept_language=rng.choice(languages),
                ),
                protocol="tracardi",
            )
        )
    return events


@dataclass(frozen=True)
class Rate:
    """Events per second: over the whole run, and in its best window of ``WINDOW`` events.

    On a machine shared with other work the whole-run figure is what this run got; the best
    window (like ``timeit``'s minimum) is the closest to what one idle core does once its
    caches are warm.
    """

    overall: float
    best_window: float


WINDOW = 5_000


def run(encoded: Sequence[bytes], context: EnrichContext, seconds: float) -> Rate:
    """Enrich the ``encoded`` events over and over until ``seconds`` were spent enriching.

    The caches start cold: the first pass pays for every address and URL seen for the first
    time, and counts in the overall figure.
    """
    done, best, spent = 0, float("inf"), 0.0
    while True:
        for start in range(0, len(encoded), WINDOW):
            window = [decode_raw_event(message) for message in encoded[start : start + WINDOW]]
            began = time.perf_counter()
            for event in window:
                enrich(event, context)
            took = time.perf_counter() - began
            best, spent, done = min(best, took / len(window)), spent + took, done + len(window)
        if spent >= seconds:
            return Rate(overall=done / spent, best_window=1 / best)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--events", type=int, default=50_000, help="distinct events to cycle")
    parser.add_argument("--city", type=Path, default=None, help="City database (.mmdb)")
    args = parser.parse_args(argv)
    city = args.city or default_city_database() or MAXMIND / "GeoIP2-City-Test.mmdb"
    asn, anonymous = MAXMIND / "GeoLite2-ASN-Test.mmdb", MAXMIND / "GeoIP2-Anonymous-IP-Test.mmdb"
    events = [encode(event) for event in make_events(args.events)]
    options = EnrichOptions(hash_fields=("properties.sku",))
    print(f"enrich bench: {len(events)} events, {len(set(user_agents()))} user agents, city {city}")
    for label, cache_size in (("geo cache on ", 32_768), ("geo cache off", 0)):
        with GeoIP2Lookup(city, asn, anonymous, cache_size=cache_size) as lookup:
            context = EnrichContext(geo=lookup, hash_salt=b"bench", options=options)
            rate = run(events, context, args.seconds)
        print(
            f"{label}: {rate.overall:,.0f} events/s on one core "
            f"(best window of {WINDOW:,} events: {rate.best_window:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
