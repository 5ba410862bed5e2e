"""Where a webhook may connect. Pure: the deliverer resolves the host, asks
:func:`check_webhook_target`, and connects only to the addresses it returns (so a DNS answer
cannot change between the check and the connection).

Refused unless allow-listed: loopback, private (RFC 1918, ULA), link-local (including the
cloud metadata address 169.254.169.254), shared (100.64/10), multicast, reserved and
unspecified addresses, and IPv6 forms that embed one (IPv4-mapped, 6to4, NAT64). An
allow-list entry is a network (``10.20.0.0/16``), an address, or an exact host name.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from processors.workflow.errors import UnsafeWebhookTarget

__all__ = ["IPAddress", "check_webhook_target", "describe_address"]

IPAddress = IPv4Address | IPv6Address
_NAT64 = IPv6Network("64:ff9b::/96")


def check_webhook_target(
    url: str, resolved_ips: Iterable[str | IPAddress], allow_list: Iterable[str] = ()
) -> tuple[IPAddress, ...]:
    """The addresses the deliverer may connect to for ``url``; UnsafeWebhookTarget naming the
    reason otherwise. Every resolved address must pass, not just one."""
    host = _host(url)
    networks, names = _allow_list(allow_list)
    literal = _parse_ip(host)
    addresses = [literal] if literal else []
    for raw in resolved_ips:
        address = raw if isinstance(raw, IPv4Address | IPv6Address) else _parse_ip(str(raw))
        if address is None:
            raise UnsafeWebhookTarget(url, f"{raw!r} is not an IP address")
        addresses.append(address)
    if not addresses:
        raise UnsafeWebhookTarget(url, f"no address was resolved for {host}")
    if host in names:
        return tuple(dict.fromkeys(addresses))
    for address in addresses:
        kind = describe_address(address)
        if kind and not any(address in net for net in networks):
            raise UnsafeWebhookTarget(
                url,
                f"{host} resolves to {address}, a {kind} address; webhooks may reach only "
                "public addresses unless the target is on the webhook allow-list",
            )
    return tuple(dict.fromkeys(addresses))


def describe_address(address: IPAddress) -> str | None:
    """Why an address is not public (``"loopback"``, ``"private"``, ...), or None if it is."""
    for embedded in _embedded(address):
        reason = describe_address(embedded)
        if reason:
            return f"{reason} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("site-local", isinstance(address, IPv6Address) and address.is_site_local),
        ("non-global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded(address: IPAddress) -> list[IPAddress]:
    if not isinstance(address, IPv6Address):
        return []
    found: list[IPAddress] = [a for a in (address.ipv4_mapped, address.sixtofour) if a]
    if address.teredo:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise UnsafeWebhookTarget(url, f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookTarget(url, f"scheme {parts.scheme!r} is not http or https")
    if not host:
        raise UnsafeWebhookTarget(url, "the URL has no host")
    if "@" in parts.netloc:
        raise UnsafeWebhookTarget(url, "credentials in the URL are not allowed")
    return host.rstrip(".")


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def _allow_list(entries: Iterable[str]) -> tuple[list[IPv4Network | IPv6Network], set[str]]:
    networks: list[IPv4Network | IPv6Network] = []
    names: set[str] = set()
    for entry in entries:
        text = entry.strip().lower()
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            names.add(text.rstrip("."))
    return networks, names
