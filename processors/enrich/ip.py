"""Client IP addresses: public or not, anonymising, which one an event carries.

Parsing what clients and proxies send (ports, brackets, zones, IPv4-mapped IPv6) is shared
with the gateway: ``trackflow.ipaddr``.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address

from processors.enrich.fields import text
from schemas import RawEvent
from schemas.enrichment import EnrichOptions
from trackflow.ipaddr import MAX_IP_TEXT, IPAddress, _parse_ip, parse_ip

__all__ = [
    "MAX_IP_TEXT",
    "IPAddress",
    "anonymize_ip",
    "client_ip_text",
    "is_public",
    "parse_ip",
    "public_ip",
]

_V4_KEEP = 0xFFFF_FF00  # /24: the last octet zeroed
_V6_KEEP = ((1 << 128) - 1) ^ ((1 << 80) - 1)  # /48: the last 80 bits zeroed


def public_ip(value: str | None) -> IPAddress | None:
    """The address in ``value`` if it is public (see :func:`is_public`), else None."""
    if not value or len(value) > MAX_IP_TEXT:
        return None
    return _public_ip(value)


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
