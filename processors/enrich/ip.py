"""Client IP addresses: parsing what clients and proxies send, public or not, anonymising.

Accepted forms: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]``,
``[2001:db8::1]:443``, ``fe80::1%eth0`` (zone dropped) and IPv4-mapped IPv6
(``::ffff:1.2.3.4``, returned as IPv4). Anything else is not an address (``None``), never an
error.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from processors.enrich.fields import text
from schemas import RawEvent
from schemas.enrichment import EnrichOptions

__all__ = ["IPAddress", "anonymize_ip", "client_ip_text", "is_public", "parse_ip", "public_ip"]

IPAddress = IPv4Address | IPv6Address

MAX_IP_TEXT = 64  # "[ffff:...:ffff%zone]:65535" fits; longer is not an address
_V4_KEEP = 0xFFFF_FF00  # /24: the last octet zeroed
_V6_KEEP = ((1 << 128) - 1) ^ ((1 << 80) - 1)  # /48: the last 80 bits zeroed


def parse_ip(value: str | None) -> IPAddress | None:
    """The address in ``value`` (port, brackets and zone stripped), or None."""
    if not value or len(value) > MAX_IP_TEXT:
        return None  # checked before the cache, so that no long string is kept in it
    return _parse_ip(value)


def public_ip(value: str | None) -> IPAddress | None:
    """The address in ``value`` if it is public (see :func:`is_public`), else None."""
    if not value or len(value) > MAX_IP_TEXT:
        return None
    return _public_ip(value)


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


@lru_cache(maxsize=65_536)
def _public_ip(value: str) -> IPAddress | None:
    address = _parse_ip(value)
    return address if address is not None and is_public(address) else None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, reserved or multicast.

    (``is_global`` alone lets IPv6's reserved ``::/8`` through, e.g. ``::81.2.69.142``.)
    """
    return address.is_global and not (address.is_multicast or address.is_reserved)


def anonymize_ip(address: IPAddress) -> IPAddress:
    """IPv4: the last octet zeroed; IPv6: the last 80 bits zeroed (a /48 is kept)."""
    if isinstance(address, IPv4Address):
        return IPv4Address(int(address) & _V4_KEEP)
    return IPv6Address(int(address) & _V6_KEEP)


def client_ip_text(event: RawEvent, options: EnrichOptions) -> str | None:
    """The client IP as sent: the gateway's ``request.ip``, else ``context.ip``.

    ``context.ip`` comes first when the source sets ``prefer_context_ip`` (trusted server-side
    senders that report their end user's address).
    """
    from_context = text(event.context.get("ip"), MAX_IP_TEXT)
    if options.prefer_context_ip and from_context:
        return from_context
    return event.request.ip or from_context
