"""The geo enricher: where the client IP is, through an injected :class:`GeoLookup`.

Private, loopback, link-local, reserved and unparsable addresses are not looked up (no geo,
no warning). The real lookup is :class:`processors.enrich.geoip2_lookup.GeoIP2Lookup`;
:class:`InMemoryGeoLookup` stands in for it in unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_network
from typing import TYPE_CHECKING, Protocol

from processors.enrich.ip import IPAddress, client_ip_text, public_ip
from schemas import RawEvent
from schemas.enrichment import Geo

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = ["GeoLookup", "InMemoryGeoLookup", "geo"]


class GeoLookup(Protocol):
    """Finds what is known about a public address; None when nothing is."""

    def lookup(self, address: IPAddress) -> Geo | None: ...


class InMemoryGeoLookup:
    """A :class:`GeoLookup` over a few networks (``"81.2.69.0/24"`` -> ``Geo``).

    The most specific network containing the address wins.
    """

    def __init__(self, networks: Mapping[str, Geo]) -> None:
        self._networks = sorted(
            ((ip_network(net), found) for net, found in networks.items()),
            key=lambda item: item[0].prefixlen,
            reverse=True,
        )

    def lookup(self, address: IPAddress) -> Geo | None:
        for network, found in self._networks:
            if network.version == address.version and address in network:
                return found
        return None


def geo(event: RawEvent, context: EnrichContext) -> Geo | None:
    """Geo for the client IP, before any anonymisation."""
    if context.geo is None:
        return None
    address = public_ip(client_ip_text(event, context.options))
    return None if address is None else context.geo.lookup(address)
