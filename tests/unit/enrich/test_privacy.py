"""IP anonymisation after the geo lookup, storing no IP, hashing fields."""

from __future__ import annotations

import hashlib
from ipaddress import ip_address

import pytest

from processors.enrich import (
    EnrichContext,
    InMemoryGeoLookup,
    anonymize_ip,
    apply_privacy,
    enrich,
    hash_value,
)
from processors.errors import InvalidEvent
from schemas.enrichment import EnrichOptions, Geo, IpPolicy
from tests.unit.enrich.helpers import make_event

SALT = b"pepper"
LONDON = InMemoryGeoLookup({"81.2.69.0/24": Geo(city="London")})


def sha(value: bytes) -> str:
    return hashlib.sha256(SALT + value).hexdigest()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.142", "81.2.69.0"),
        ("255.255.255.255", "255.255.255.0"),
        ("2001:db8:abcd:1234:5678:9abc:def0:1234", "2001:db8:abcd::"),
        ("2001:480:10::1", "2001:480:10::"),
        ("::1", "::"),
    ],
)
def test_anonymize_ip(ip: str, expected: str) -> None:
    assert str(anonymize_ip(ip_address(ip))) == expected


def test_geo_is_looked_up_before_the_ip_is_anonymised() -> None:
    event = make_event(ip="81.2.69.142:5555")
    found = enrich(event, EnrichContext(geo=LONDON))
    assert found.enrichment.geo == Geo(city="London")
    assert found.enrichment.ip == "81.2.69.0"
    assert found.request.ip == "81.2.69.0"
    assert event.request.ip == "81.2.69.142:5555"  # the input is not changed


@pytest.mark.parametrize(
    ("policy", "request_ip", "enrichment_ip"),
    [
        ("full", "[2001:480:10::1]:443", "2001:480:10::1"),
        ("anonymized", "2001:480:10::", "2001:480:10::"),
        ("none", None, None),
    ],
)
def test_ip_policies(policy: IpPolicy, request_ip: str | None, enrichment_ip: str | None) -> None:
    event = make_event(ip="[2001:480:10::1]:443", context={"ip": "2001:480:10::9"})
    ctx = EnrichContext(options=EnrichOptions(ip=policy))
    found = enrich(event, ctx)
    assert (found.request.ip, found.enrichment.ip) == (request_ip, enrichment_ip)
    expected_context_ip = {"full": "2001:480:10::9", "anonymized": "2001:480:10::"}.get(policy)
    assert found.context.get("ip") == expected_context_ip


def test_store_no_ip_still_finds_the_geo() -> None:
    found = enrich(
        make_event(ip="81.2.69.142"), EnrichContext(LONDON, options=EnrichOptions(ip="none"))
    )
    assert (found.enrichment.geo, found.enrichment.ip, found.request.ip) == (
        Geo(city="London"),
        None,
        None,
    )
    assert "ip" not in found.context


def test_an_unparsable_ip_is_dropped_unless_kept_in_full() -> None:
    event = make_event(ip="unknown")
    assert enrich(event, EnrichContext()).request.ip is None
    kept = enrich(event, EnrichContext(options=EnrichOptions(ip="full")))
    assert (kept.request.ip, kept.enrichment.ip) == ("unknown", None)


def test_context_ip_is_used_when_the_request_has_none() -> None:
    event = make_event(context={"ip": "81.2.69.142"})
    found = enrich(event, EnrichContext(LONDON))
    assert (found.enrichment.geo, found.enrichment.ip) == (Geo(city="London"), "81.2.69.0")


def test_prefer_context_ip() -> None:
    event = make_event(ip="198.51.100.1", context={"ip": "81.2.69.142"})
    assert enrich(event, EnrichContext(LONDON)).enrichment.geo is None
    ctx = EnrichContext(LONDON, options=EnrichOptions(prefer_context_ip=True))
    assert enrich(event, ctx).enrichment.geo == Geo(city="London")


def test_hashing_configured_fields() -> None:
    event = make_event(
        properties={"email": "a@b.test", "age": 42, "vip": True, "name": "kept"},
        context={"traits": {"phone": ["+1", "+2"], "address": {"zip": "1234"}}, "n": None},
    )
    options = EnrichOptions(
        hash_fields=(
            "properties.email",
            "properties.age",
            "properties.vip",
            "properties.missing",
            "context.traits.phone",
            "context.traits.address",
            "context.n",
        )
    )
    kept, _ = apply_privacy(event, EnrichContext(hash_salt=SALT, options=options))
    assert kept.properties == {
        "email": sha(b"a@b.test"),
        "age": sha(b"42"),
        "vip": sha(b"true"),
        "name": "kept",
    }
    assert kept.context == {
        "traits": {"phone": [sha(b"+1"), sha(b"+2")], "address": {"zip": sha(b"1234")}},
        "n": None,
    }
    assert event.properties["email"] == "a@b.test"  # the input is not changed
    assert event.context["traits"]["phone"] == ["+1", "+2"]


def test_hashing_reaches_the_enriched_event() -> None:
    ctx = EnrichContext(hash_salt=SALT, options=EnrichOptions(hash_fields=("properties.email",)))
    found = enrich(make_event(properties={"email": "a@b.test"}), ctx)
    assert found.properties == {"email": sha(b"a@b.test")}


def test_a_path_through_a_non_object_is_left_alone() -> None:
    ctx = EnrichContext(hash_salt=SALT, options=EnrichOptions(hash_fields=("properties.a.b",)))
    kept, _ = apply_privacy(make_event(properties={"a": "text"}), ctx)
    assert kept.properties == {"a": "text"}


def test_hashing_without_a_salt_fails_the_event_instead_of_storing_plain_values() -> None:
    ctx = EnrichContext(options=EnrichOptions(hash_fields=("properties.email",)))
    with pytest.raises(InvalidEvent, match=r"no hash salt is configured \(TRACKFLOW_HASH_SALT\)"):
        enrich(make_event(properties={"email": "a@b.test"}), ctx)


def test_hash_value_is_salted_sha256_hex() -> None:
    assert hash_value("x", b"s") == hashlib.sha256(b"sx").hexdigest()
    assert hash_value("x", b"t") != hash_value("x", b"s")
    assert hash_value(None, b"s") is None


@pytest.mark.parametrize(
    "path", ["email", "traits.email", "properties", "properties..x", "request.ip"]
)
def test_hash_paths_must_be_under_properties_or_context(path: str) -> None:
    with pytest.raises(ValueError, match="is not a dotted path under properties or context"):
        EnrichOptions(hash_fields=(path,))
