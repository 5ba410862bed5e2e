"""The device enricher: browser, OS and device from the user agent (ua-parser, uap-core rules).

Parsing is the expensive part (tens of microseconds with ``ua-parser-rs``, milliseconds
without), and user agents repeat, so :class:`CachedUserAgentParser` keeps a bounded LRU of
finished :class:`Device` results. Bot/mobile/tablet/PC flags are derived from ua-parser's
families and a few tokens of the string; a bot is none of mobile, tablet or PC.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import ua_parser

from processors.enrich.fields import dig, text
from schemas import RawEvent
from schemas.enrichment import Device

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = [
    "MAX_USER_AGENT",
    "CachedUserAgentParser",
    "UserAgentParser",
    "default_user_agent_parser",
    "device",
    "device_from_result",
    "user_agent_of",
]

MAX_USER_AGENT = 2048  # longer strings are cut before parsing (and before caching)

_BOT_WORDS = ("bot", "crawler", "spider", "headless")
_TABLET_DEVICES = ("iPad", "Kindle", "Playbook", "PlayBook", "Galaxy Tab", "Xoom", "Nexus 7")
_PHONE_DEVICES = ("iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone")
_MOBILE_OS = frozenset(
    {
        "Android",
        "iOS",
        "Windows Phone",
        "Windows Mobile",
        "Windows CE",
        "BlackBerry OS",
        "Symbian OS",
        "Symbian^3",
        "Nokia Series 40",
        "Nokia Series 30 Plus",
        "Bada",
        "Firefox OS",
        "KaiOS",
        "Tizen",
        "Sailfish",
        "MeeGo",
        "Maemo",
        "webOS",
        "Ubuntu Touch",
        "BREW",
        "Brew MP",
    }
)
_MOBILE_BROWSERS = ("Mobile", "Opera Mini", "UC Browser")
_PC_OS = frozenset(
    {
        "Mac OS X",
        "Mac OS",
        "Linux",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "CentOS",
        "SUSE",
        "openSUSE",
        "Gentoo",
        "Arch Linux",
        "Mint",
        "Kubuntu",
        "Mageia",
        "Slackware",
        "Chrome OS",
        "Chromium OS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
        "BeOS",
        "Haiku",
    }
)


class UserAgentParser(Protocol):
    """Turns a user-agent string into a :class:`Device`."""

    def __call__(self, user_agent: str) -> Device: ...


class CachedUserAgentParser:
    """ua-parser with the fastest resolver installed, behind an LRU of ``maxsize`` results."""

    def __init__(self, maxsize: int = 8192, parser: ua_parser.Parser | None = None) -> None:
        self._parser = parser or _best_parser()
        self._cached = lru_cache(maxsize=maxsize)(self._parse)

    def __call__(self, user_agent: str) -> Device:
        return self._cached(user_agent[:MAX_USER_AGENT])

    def _parse(self, user_agent: str) -> Device:
        return device_from_result(self._parser.parse(user_agent))


@lru_cache(maxsize=1)
def default_user_agent_parser() -> CachedUserAgentParser:
    """One shared parser per process (its rules compile lazily, on first use)."""
    return CachedUserAgentParser()


def _best_parser() -> ua_parser.Parser:
    """Rust (``ua-parser-rs``) or re2 resolvers with lazily compiled rules, else pure Python."""
    if ua_parser.BestAvailableResolver is ua_parser.BasicResolver:
        return ua_parser.Parser(ua_parser.BasicResolver(ua_parser.load_builtins()))
    return ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins()))


def user_agent_of(event: RawEvent) -> str | None:
    """The gateway's User-Agent header, else Segment's ``context.userAgent``, else Tracardi's
    ``context.browser.local.browser.userAgent``."""
    return (
        text(event.request.user_agent, MAX_USER_AGENT)
        or text(event.context.get("userAgent"), MAX_USER_AGENT)
        or text(dig(event.context, "browser", "local", "browser", "userAgent"), MAX_USER_AGENT)
    )


def device(event: RawEvent, context: EnrichContext) -> Device | None:
    user_agent = user_agent_of(event)
    return context.user_agents(user_agent) if user_agent else None


def device_from_result(result: ua_parser.Result) -> Device:
    """ua-parser's result as a :class:`Device` with the bot/mobile/tablet/PC flags."""
    found = result.with_defaults()
    browser, os, hardware, string = found.user_agent, found.os, found.device, found.string
    is_bot = hardware.family == "Spider" or _has_bot_word(browser.family)
    is_tablet = not is_bot and _is_tablet(os.family, hardware.family, string)
    is_mobile = (
        not is_bot
        and not is_tablet
        and _is_mobile(os.family, browser.family, hardware.family, string)
    )
    is_pc = not (is_bot or is_tablet or is_mobile) and _is_pc(os.family)
    return Device(
        browser=browser.family,
        browser_version=_version(browser.major, browser.minor, browser.patch, browser.patch_minor),
        os=os.family,
        os_version=_version(os.major, os.minor, os.patch, os.patch_minor),
        device=hardware.family,
        brand=hardware.brand,
        model=hardware.model,
        is_bot=is_bot,
        is_mobile=is_mobile,
        is_tablet=is_tablet,
        is_pc=is_pc,
    )


def _version(*parts: str | None) -> str | None:
    """``"120.0.1"`` from the leading parts that are set."""
    present: list[str] = []
    for part in parts:
        if part is None:
            break
        present.append(part)
    return ".".join(present) or None


def _has_bot_word(family: str) -> bool:
    lowered = family.lower()
    return any(word in lowered for word in _BOT_WORDS)


def _is_tablet(os: str, hardware: str, string: str) -> bool:
    if any(name in hardware for name in _TABLET_DEVICES):
        return True
    if "Tablet" in string and "Tablet PC" not in string:  # "Tablet PC": Windows pen laptops
        return True
    if os == "Android":  # Android tablets' browsers leave "Mobile" out
        return "Mobi" not in string
    return os.startswith("Windows RT")


def _is_mobile(os: str, browser: str, hardware: str, string: str) -> bool:
    return (
        "Mobi" in string
        or hardware.startswith(_PHONE_DEVICES)
        or os in _MOBILE_OS
        or any(token in browser for token in _MOBILE_BROWSERS)
        or "J2ME" in string
        or "MIDP" in string
    )


def _is_pc(os: str) -> bool:
    if os.startswith("Windows"):
        return not os.startswith(("Windows Phone", "Windows Mobile", "Windows CE", "Windows RT"))
    return os in _PC_OS
