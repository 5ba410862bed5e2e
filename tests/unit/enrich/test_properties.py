"""Property-based: no URL, header, IP or context shape makes an enricher or enrich() raise."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_gateway.client_ip import client_ip
from processors.enrich import DEFAULT_ENRICHERS, EnrichContext, GeoIP2Lookup, enrich, parse_ip
from processors.enrich.language import preferred_language
from schemas import RawEvent
from schemas.enrichment import ENRICHER_NAMES, EnrichedEvent, EnrichOptions
from tests.unit.enrich.helpers import ANONYMOUS_DB, ASN_DB, CITY_DB, make_event

GEOIP = GeoIP2Lookup(CITY_DB, ASN_DB, ANONYMOUS_DB)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=200)
octet = st.integers(0, 255).map(str)
ipv4 = st.builds(lambda *parts: ".".join(parts), octet, octet, octet, octet)
ipv6 = st.ip_addresses(v=6).map(str)
ip_text = st.one_of(
    ipv4,
    ipv6,
    st.builds(lambda ip, port: f"{ip}:{port}", ipv4, st.integers(-5, 70000)),
    st.builds(lambda ip, port: f"[{ip}]:{port}", ipv6, st.integers(0, 65535)),
    st.builds(lambda ip: f"[{ip}", ipv6),
    st.ip_addresses().map(str),
    text,
)
query_name = st.sampled_from(
    ["utm_source", "UTM_MEDIUM", "utm_campaign", "utm_id", "gclid", "fbclid", "li_fat_id", "q", ""]
)
query = st.lists(st.tuples(query_name, text), max_size=6).map(
    lambda pairs: "&".join(f"{name}={value}" for name, value in pairs)
)
url = st.one_of(
    st.builds(
        lambda scheme, host, path, q, fragment: f"{scheme}{host}{path}?{q}#{fragment}",
        st.sampled_from(["https://", "http://", "//", "", "android-app://", "mailto:", "h:"]),
        st.one_of(
            st.sampled_from(["www.google.com", "shop.example.com", "t.co", "[::1", "[::1]:80"]),
            text,
        ),
        text,
        query,
        text,
    ),
    text,
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what JSON decoding (orjson) can give
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
page = st.fixed_dictionaries(
    {},
    optional={
        "url": st.one_of(url, json_value),
        "referer": st.one_of(
            url, json_value, st.fixed_dictionaries({"host": st.one_of(url, json_value)})
        ),
        "referrer": st.one_of(url, json_value),
    },
)
context = st.fixed_dictionaries(
    {},
    optional={
        "page": st.one_of(page, json_value),
        "utm": json_value,
        "campaign": st.one_of(st.dictionaries(query_name, json_value, max_size=4), json_value),
        "ip": st.one_of(ip_text, json_value),
        "locale": st.one_of(text, json_value),
        "timezone": st.one_of(text, json_value),
        "time": st.one_of(st.fixed_dictionaries({"tz": text}), json_value),
        "browser": json_value,
        "userAgent": text,
        "traits": json_value,
    },
)
options = st.builds(
    EnrichOptions,
    ip=st.sampled_from(["full", "anonymized", "none"]),
    prefer_context_ip=st.booleans(),
    hash_fields=st.just(("properties.email", "context.traits.email", "context.traits")),
    internal_hosts=st.lists(text, max_size=2).map(tuple),
)


@st.composite
def events(draw: st.DrawFn) -> RawEvent:
    request: dict[str, Any] = {
        "ip": draw(st.none() | ip_text),
        "user_agent": draw(st.none() | text),
        "referer": draw(st.none() | url),
        "origin": draw(st.none() | url),
        "accept_language": draw(st.none() | text),
    }
    properties = draw(st.dictionaries(st.sampled_from(["email", "x"]), json_value, max_size=2))
    return make_event(context=draw(context), properties=properties, **request)


@SETTINGS
@given(events(), options)
def test_enrich_never_raises_and_its_output_serialises(
    event: RawEvent, opts: EnrichOptions
) -> None:
    ctx = EnrichContext(geo=GEOIP, hash_salt=b"salt", options=opts)
    found = enrich(event, ctx)
    assert found.enrichment.warnings == ()
    assert EnrichedEvent.model_validate_json(orjson.dumps(found.model_dump())) == found
    assert "\x00" not in orjson.dumps(found.enrichment.model_dump()).decode()


@SETTINGS
@given(events())
def test_no_enricher_raises(event: RawEvent) -> None:
    ctx = EnrichContext(geo=GEOIP)
    assert [name for name, _ in DEFAULT_ENRICHERS] == list(ENRICHER_NAMES)
    for _, enricher in DEFAULT_ENRICHERS:
        enricher(event, ctx)


@SETTINGS
@given(ip_text, st.none() | st.lists(ip_text, max_size=4).map(", ".join))
def test_ip_parsing_and_client_ip_never_raise(peer: str, forwarded_for: str | None) -> None:
    parse_ip(peer)
    found = client_ip(peer, forwarded_for, ["10.0.0.0/8", "::1"])
    assert found is None or parse_ip(found) is not None


@SETTINGS
@given(text)
def test_accept_language_never_raises(header: str) -> None:
    preferred_language(header)
