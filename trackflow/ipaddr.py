"""IP addresses as clients and proxies send them, parsed once for the gateway and the stages.

Accepted forms: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]``,
``[2001:db8::1]:443``, ``fe80::1%eth0`` (zone dropped) and IPv4-mapped IPv6
(``::ffff:1.2.3.4``, returned as IPv4). Anything else is not an address (``None``), never an
error.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = ["MAX_IP_TEXT", "IPAddress", "parse_ip"]

IPAddress = IPv4Address | IPv6Address

MAX_IP_TEXT = 64  # "[ffff:...:ffff%zone]:65535" fits; longer is not an address


def parse_ip(value: str | None) -> IPAddress | None:
    """The address in ``value`` (port, brackets and zone stripped), or None."""
    if not value or len(value) > MAX_IP_TEXT:
        return None  # checked before the cache, so that no long string is kept in it
    return _parse_ip(value)


@lru_cache(maxsize=65_536)
def _parse_ip(value: str) -> IPAddress | None:
    host = value.strip()
    if host.startswith("["):
        host, bracket, _ = host[1:].partition("]")
        if not bracket:
            return None
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.partition("%")[0]
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
