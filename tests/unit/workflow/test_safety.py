"""Where webhooks may connect: public addresses, or what the allow-list names."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from processors.workflow import UnsafeWebhookTarget, check_webhook_target

URL = "https://hooks.example.com/x"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.20", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "non-global"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    with pytest.raises(UnsafeWebhookTarget) as caught:
        check_webhook_target(URL, [address])
    assert kind in caught.value.reason
    assert address in caught.value.reason or kind in caught.value.reason
    assert caught.value.retriable is False


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"]
)
def test_public_addresses_pass_and_are_returned_to_connect_to(address: str) -> None:
    assert check_webhook_target(URL, [address]) == (ip_address(address),)


def test_every_resolved_address_must_pass() -> None:
    with pytest.raises(UnsafeWebhookTarget, match=r"10\.0\.0\.1"):
        check_webhook_target(URL, ["93.184.216.34", "10.0.0.1"])


@pytest.mark.parametrize(
    ("url", "resolved", "allow"),
    [
        ("http://10.1.2.3:8080/hook", [], ["10.0.0.0/8"]),
        (URL, ["10.1.2.3"], ["10.1.2.3"]),
        (URL, ["192.168.0.7"], ["192.168.0.0/24"]),
        ("http://crm.internal/hook", ["10.9.9.9", "fd00::9"], ["CRM.internal"]),
        ("http://[::1]:9000/", [], ["::1/128"]),
    ],
)
def test_the_allow_list_admits_networks_addresses_and_host_names(
    url: str, resolved: list[str], allow: list[str]
) -> None:
    assert check_webhook_target(url, resolved, allow)


def test_the_allow_list_is_exact() -> None:
    with pytest.raises(UnsafeWebhookTarget):
        check_webhook_target(URL, ["192.168.1.7"], ["192.168.0.0/24", "other.example.com"])


def test_a_literal_ip_in_the_url_is_checked_even_without_resolution() -> None:
    with pytest.raises(UnsafeWebhookTarget, match="loopback"):
        check_webhook_target("http://127.0.0.1/admin", [])


@pytest.mark.parametrize(
    ("url", "resolved", "reason"),
    [
        ("ftp://hooks.example.com/", ["8.8.8.8"], "scheme 'ftp'"),
        ("file:///etc/passwd", [], "scheme 'file'"),
        ("https:///path", ["8.8.8.8"], "no host"),
        ("https://user:pw@hooks.example.com/", ["8.8.8.8"], "credentials"),
        (URL, [], "no address was resolved"),
        (URL, ["not-an-ip"], "not an IP address"),
        ("http://[::1/", [], "not a URL"),
    ],
)
def test_bad_urls_and_answers_are_refused(url: str, resolved: list[str], reason: str) -> None:
    with pytest.raises(UnsafeWebhookTarget, match=reason):
        check_webhook_target(url, resolved)
