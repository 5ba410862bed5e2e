"""The gateway's client IP behind trusted proxies."""

from __future__ import annotations

import pytest

from ingest_gateway.client_ip import client_ip, parse_trusted_proxies

TRUSTED = ["10.0.0.0/8", "192.168.1.1", "fd00::/8"]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # no proxy in between
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9:5123", None, "203.0.113.9"),
        ("[2001:db8::1]:443", None, "2001:db8::1"),
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
        # an untrusted peer's X-Forwarded-For is ignored: the client cannot choose its IP
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # a trusted peer: the nearest untrusted hop from the right
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.5", "198.51.100.7, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        ("10.0.0.5", "198.51.100.7,10.1.1.1 , 192.168.1.1", "198.51.100.7"),
        ("192.168.1.1", "198.51.100.7:1234", "198.51.100.7"),
        ("[fd00::1]:443", "[2001:db8::7]:555", "2001:db8::7"),
        # every hop trusted: the furthest one
        ("10.0.0.5", "10.0.0.9, 10.0.0.8", "10.0.0.9"),
        # garbage ends the walk at the last trusted hop
        ("10.0.0.5", "198.51.100.7, unknown", "10.0.0.5"),
        ("10.0.0.5", "198.51.100.7, garbage, 10.0.0.3", "10.0.0.3"),
        ("10.0.0.5", "", "10.0.0.5"),
        # a peer that is not an address
        (None, "198.51.100.7", None),
        ("testclient", None, None),
    ],
)
def test_client_ip(peer: str | None, forwarded_for: str | None, expected: str | None) -> None:
    assert client_ip(peer, forwarded_for, TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip("10.0.0.5", "198.51.100.7", []) == "10.0.0.5"


def test_a_bad_trusted_proxy_is_named() -> None:
    with pytest.raises(ValueError, match=r"trusted proxy '10\.0\.0\.0/33' is not an IP"):
        parse_trusted_proxies(("10.0.0.1", "10.0.0.0/33"))
    with pytest.raises(ValueError, match=r"'proxy\.local'"):
        client_ip("10.0.0.5", None, ["proxy.local"])


def test_host_bits_in_a_cidr_are_accepted() -> None:
    assert client_ip("10.9.9.9", "198.51.100.7", ["10.1.2.3/8"]) == "198.51.100.7"
