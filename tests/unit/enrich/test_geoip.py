"""GeoIP against MaxMind's test databases: every network of the City source, ASN, anonymity."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb
import pytest

from processors.enrich import (
    EnrichContext,
    GeoDatabaseError,
    GeoIP2Lookup,
    InMemoryGeoLookup,
    default_city_database,
    enrich,
    is_public,
)
from schemas.enrichment import Anonymity, Asn, Geo
from tests.unit.enrich.helpers import ANONYMOUS_DB, ASN_DB, CITY_DB, CITY_SOURCE, make_event

Network = IPv4Network | IPv6Network

# Networks of the City source that trackflow never looks up because their addresses are not
# public (private, reserved, documentation...). Explicit, so that nothing is skipped silently:
# test_the_skip_list_is_exactly_the_non_public_networks keeps it honest. None today.
NOT_PUBLIC: dict[str, str] = {}


def _network(name: str) -> Network:
    """The source writes IPv4 networks as IPv4-compatible IPv6 (``::81.2.69.142/127``), which
    is where an IPv4 tree lives in an IPv6 database; such a network is looked up as IPv4."""
    if name.startswith("::") and "." in name:
        address, prefix = name[2:].split("/")
        return ip_network(f"{address}/{int(prefix) - 96}")
    return ip_network(name)


def _records() -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for entry in json.loads(CITY_SOURCE.read_text(encoding="utf-8")):
        ((name, record),) = entry.items()
        records[name] = record  # one network appears twice, with the same record
    return records


RECORDS = _records()


def _expected(record: dict[str, Any]) -> dict[str, Any]:
    def en(part: dict[str, Any] | None) -> str | None:
        name = (part or {}).get("names", {}).get("en")
        return name if isinstance(name, str) else None

    country = record.get("country")
    continent = record.get("continent")
    region = (record.get("subdivisions") or [None])[-1]
    location = record.get("location") or {}
    return {
        "country_code": (country or {}).get("iso_code"),
        "country": en(country),
        "continent_code": (continent or {}).get("code"),
        "continent": en(continent),
        "region_code": (region or {}).get("iso_code"),
        "region": en(region),
        "city": en(record.get("city")),
        "postal_code": (record.get("postal") or {}).get("code"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "accuracy_radius_km": location.get("accuracy_radius"),
        "time_zone": location.get("time_zone"),
    }


def test_the_skip_list_is_exactly_the_non_public_networks() -> None:
    not_public = {
        name for name in RECORDS if not is_public(_network(name)[_network(name).num_addresses // 2])
    }
    assert not_public == set(NOT_PUBLIC)


@pytest.mark.parametrize("name", [name for name in RECORDS if name not in NOT_PUBLIC])
def test_every_network_of_the_city_source(name: str, geoip: GeoIP2Lookup) -> None:
    network = _network(name)
    address = network[network.num_addresses // 2]
    found = geoip.lookup(address)
    assert found is not None, f"{address} (in {name}) not found"
    expected = _expected(RECORDS[name])
    assert {field: getattr(found, field) for field in expected} == expected


def test_the_enricher_finds_london_through_a_port_and_fills_every_database(
    geoip: GeoIP2Lookup,
) -> None:
    event = make_event(ip="81.2.69.142:5678")
    found = enrich(event, EnrichContext(geo=geoip)).enrichment.geo
    assert found is not None
    assert (found.country_code, found.city, found.region_code) == ("GB", "London", "ENG")
    assert found.anonymity == Anonymity(
        is_anonymous=True,
        is_anonymous_vpn=True,
        is_hosting_provider=True,
        is_public_proxy=True,
        is_residential_proxy=True,
        is_tor_exit_node=True,
    )


@pytest.mark.parametrize(
    ("ip", "city", "country"),
    [
        ("216.160.83.56", "Milton", "US"),
        ("2001:480:10::1", "San Diego", "US"),
        ("[2001:480:10::1]:443", "San Diego", "US"),
        ("::ffff:81.2.69.142", "London", "GB"),
        ("89.160.20.112", "Linköping", "SE"),
    ],
)
def test_ipv4_ipv6_ports_and_mapped_addresses(
    ip: str, city: str, country: str, geoip: GeoIP2Lookup
) -> None:
    found = enrich(make_event(ip=ip), EnrichContext(geo=geoip)).enrichment.geo
    assert found is not None
    assert (found.city, found.country_code) == (city, country)


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.4",
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "fe80::1%eth0",
        "fc00::1",
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",
        "0.0.0.0",
        "::81.2.69.142",  # IPv4-compatible IPv6 (deprecated, reserved ::/8): not London
        "not an ip",
        "",
        "1.2.3.4.5",
        "[2001:480:10::1",
    ],
)
def test_private_reserved_and_unparsable_addresses_give_no_geo_and_no_warning(
    ip: str, geoip: GeoIP2Lookup
) -> None:
    found = enrich(make_event(ip=ip), EnrichContext(geo=geoip)).enrichment
    assert (found.geo, found.warnings) == (None, ())


def test_an_address_in_no_database_gives_no_geo(geoip: GeoIP2Lookup) -> None:
    assert geoip.lookup(ip_address("1.1.1.1")) is None


def test_asn_with_and_without_organisation(geoip: GeoIP2Lookup) -> None:
    telstra = geoip.lookup(ip_address("1.128.0.1"))
    assert telstra is not None
    assert telstra.asn == Asn(number=1221, organization="Telstra Pty Ltd")
    assert telstra.country_code is None  # not in the City test database
    att = geoip.lookup(ip_address("12.81.100.1"))
    assert att is not None
    assert att.asn == Asn(number=7018, organization=None)


@pytest.mark.parametrize(
    ("ip", "flags"),
    [
        ("1.2.0.1", {"is_anonymous", "is_anonymous_vpn"}),
        ("1.124.213.1", {"is_anonymous", "is_anonymous_vpn", "is_tor_exit_node"}),
        ("186.30.236.1", {"is_anonymous", "is_public_proxy"}),
        ("71.160.223.1", {"is_anonymous", "is_hosting_provider"}),
        ("1.0.0.1", set()),  # listed with no flag
        ("1.128.0.1", set()),  # not listed at all
    ],
)
def test_anonymity_flags(ip: str, flags: set[str], geoip: GeoIP2Lookup) -> None:
    found = geoip.lookup(ip_address(ip))
    assert found is not None
    assert found.anonymity is not None
    assert {name for name, value in found.anonymity.model_dump().items() if value} == flags


def test_without_asn_and_anonymous_databases_those_parts_are_none() -> None:
    with GeoIP2Lookup(CITY_DB) as lookup:
        found = lookup.lookup(ip_address("81.2.69.142"))
    assert found is not None
    assert (found.city, found.asn, found.anonymity) == ("London", None, None)


def test_only_an_asn_database() -> None:
    with GeoIP2Lookup(None, asn=ASN_DB) as lookup:
        found = lookup.lookup(ip_address("1.128.0.1"))
    assert found == Geo(asn=Asn(number=1221, organization="Telstra Pty Ltd"))


def test_a_database_of_the_wrong_kind_is_named() -> None:
    with pytest.raises(GeoDatabaseError, match=r"GeoLite2-ASN database, expected .*City"):
        GeoIP2Lookup(ASN_DB)
    with pytest.raises(GeoDatabaseError, match=r"GeoIP2-City database, expected .*Anonymous-IP"):
        GeoIP2Lookup(CITY_DB, anonymous=CITY_DB)


def test_a_missing_or_broken_database_is_named() -> None:
    with pytest.raises(GeoDatabaseError, match=r"cannot open the MaxMind ASN database .*nope"):
        GeoIP2Lookup(CITY_DB, asn="/nonexistent/nope.mmdb")
    with pytest.raises(GeoDatabaseError, match=r"database .*LICENSE-MIT.*valid MaxMind DB"):
        GeoIP2Lookup(CITY_DB.parent / "LICENSE-MIT")


def test_the_default_city_database_is_the_geolite2_package_file() -> None:
    path = default_city_database()
    assert path is not None
    assert path.name == "GeoLite2-City.mmdb"
    with GeoIP2Lookup(path) as lookup:
        found = lookup.lookup(ip_address("81.2.69.142"))
    assert found is not None
    assert found.country_code == "GB"


def test_no_geo_lookup_configured_means_no_geo() -> None:
    assert enrich(make_event(ip="81.2.69.142"), EnrichContext()).enrichment.geo is None


def test_the_in_memory_stand_in_prefers_the_most_specific_network() -> None:
    lookup = InMemoryGeoLookup(
        {"81.2.0.0/16": Geo(country_code="GB"), "81.2.69.0/24": Geo(city="London")}
    )
    assert lookup.lookup(ip_address("81.2.69.1")) == Geo(city="London")
    assert lookup.lookup(ip_address("81.2.1.1")) == Geo(country_code="GB")
    assert lookup.lookup(ip_address("2001:db8::1")) is None


# -- the same answers as geoip2's models ---------------------------------------------------


Readers = tuple[geoip2.database.Reader, geoip2.database.Reader, geoip2.database.Reader]


@pytest.fixture(scope="module")
def geoip2_readers() -> Iterator[Readers]:
    with (
        geoip2.database.Reader(str(CITY_DB)) as city,
        geoip2.database.Reader(str(ASN_DB)) as asn,
        geoip2.database.Reader(str(ANONYMOUS_DB)) as anonymous,
    ):
        yield city, asn, anonymous


def _geoip2_answer(address: str, readers: Readers) -> dict[str, Any]:
    """What geoip2's own models say of ``address``, in :class:`Geo`'s terms (the oracle)."""
    city, asn, anonymous = readers
    answer: dict[str, Any] = {"anonymity": Anonymity()}
    with contextlib.suppress(geoip2.errors.AddressNotFoundError):
        found = city.city(address)
        region = found.subdivisions.most_specific
        answer |= {
            "country_code": found.country.iso_code,
            "country": found.country.name,
            "continent_code": found.continent.code,
            "continent": found.continent.name,
            "region_code": region.iso_code,
            "region": region.name,
            "city": found.city.name,
            "postal_code": found.postal.code,
            "latitude": found.location.latitude,
            "longitude": found.location.longitude,
            "accuracy_radius_km": found.location.accuracy_radius,
            "time_zone": found.location.time_zone,
        }
    with contextlib.suppress(geoip2.errors.AddressNotFoundError):
        number = asn.asn(address)
        if number.autonomous_system_number is not None:
            answer["asn"] = Asn(
                number=number.autonomous_system_number,
                organization=number.autonomous_system_organization,
            )
    with contextlib.suppress(geoip2.errors.AddressNotFoundError):
        flags = anonymous.anonymous_ip(address)
        answer["anonymity"] = Anonymity(
            **{flag: getattr(flags, flag) for flag in Anonymity.model_fields}
        )
    return answer


def _every_network_address() -> list[str]:
    """One public address in each network of the three test databases."""
    found: set[str] = set()
    for path in (CITY_DB, ASN_DB, ANONYMOUS_DB):
        with maxminddb.open_database(str(path)) as reader:
            for network, _ in reader:
                address = network[network.num_addresses // 2]
                if address.version == 6 and address.ipv4_mapped is not None:
                    continue  # the IPv4 tree seen through IPv6: the IPv4 address is tested
                if is_public(address):
                    found.add(str(address))
    return sorted(found)


@pytest.mark.parametrize("address", _every_network_address())
def test_every_network_of_every_test_database_agrees_with_geoip2(
    address: str, geoip: GeoIP2Lookup, geoip2_readers: Readers
) -> None:
    expected = _geoip2_answer(address, geoip2_readers)
    found = geoip.lookup(ip_address(address))
    if found is None:
        assert set(expected) <= {"anonymity"} and expected.get("anonymity") == Anonymity()
        return
    assert {field: getattr(found, field) for field in expected} == expected
