"""The client's IP behind reverse proxies. Pure; no I/O.

``X-Forwarded-For`` is believed only when the TCP peer is a trusted proxy, and only as far as
the chain is trusted: walking from the right (the hop nearest to us), trusted proxies are
skipped and the first address that is not one is the client. So a client cannot choose its
own IP by sending the header itself.

    peer 10.0.0.5 (trusted), X-Forwarded-For "198.51.100.7, 203.0.113.9, 10.0.0.2"
    trusted ["10.0.0.0/8"]  ->  "203.0.113.9"

Addresses may carry a port (``1.2.3.4:5678``, ``[2001:db8::1]:443``); IPv4-mapped IPv6 is
returned as IPv4. An entry that is not an address ends the walk at the last trusted hop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network

from trackflow.ipaddr import IPAddress, parse_ip

__all__ = ["client_ip", "parse_trusted_proxies"]

_Network = IPv4Network | IPv6Network
_MAX_HOPS = 32


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]
) -> str | None:
    """The client's address as text, or None when the peer is not an address.

    Raises ``ValueError`` naming a ``trusted_proxies`` entry that is not an IP or CIDR
    (check them once at start-up with :func:`parse_trusted_proxies`).
    """
    address = parse_ip(peer)
    if address is None:
        return None
    trusted = parse_trusted_proxies(tuple(trusted_proxies))
    if not forwarded_for or not _is_trusted(address, trusted):
        return str(address)
    for hop in reversed(forwarded_for.split(",")[-_MAX_HOPS:]):
        found = parse_ip(hop)
        if found is None:
            break
        address = found
        if not _is_trusted(address, trusted):
            break
    return str(address)


@lru_cache(maxsize=16)
def parse_trusted_proxies(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    """Networks from IPs and CIDRs (``"10.0.0.1"``, ``"10.0.0.0/8"``, ``"fd00::/8"``)."""
    networks: list[_Network] = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted proxy {entry!r} is not an IP address or CIDR network "
                "(e.g. '10.0.0.1', '10.0.0.0/8', 'fd00::/8')"
            ) from None
    return tuple(networks)


def _is_trusted(address: IPAddress, trusted: tuple[_Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
