"""Which referring hosts are search engines, social networks, email, or ads: the table.

Three rules, tried in order on the host without a leading ``www.``:

1. ``HOSTS``: the host or its nearest listed parent domain (``l.facebook.com`` ->
   ``facebook.com``), including Android app ids sent as ``android-app://<package>/``;
2. ``SEARCH_BRANDS``: ``<brand>.<country suffix>`` (``google.de``, ``google.co.uk``,
   ``yandex.com.tr``);
3. a first label of ``mail``, ``webmail`` or ``email`` -> email.

Anything else is ``unknown``. Keep entries lower-case; add to the table rather than to code.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from schemas.enrichment import ReferrerMedium

__all__ = ["EMAIL_LABELS", "HOSTS", "SEARCH_BRANDS", "classify_host"]

Entry = tuple[ReferrerMedium, str | None]

HOSTS: Mapping[str, Entry] = {
    # search
    "bing.com": ("search", "Bing"),
    "search.yahoo.com": ("search", "Yahoo"),
    "search.yahoo.co.jp": ("search", "Yahoo Japan"),
    "duckduckgo.com": ("search", "DuckDuckGo"),
    "baidu.com": ("search", "Baidu"),
    "ecosia.org": ("search", "Ecosia"),
    "search.brave.com": ("search", "Brave"),
    "startpage.com": ("search", "Startpage"),
    "search.aol.com": ("search", "AOL"),
    "ask.com": ("search", "Ask"),
    "naver.com": ("search", "Naver"),
    "search.naver.com": ("search", "Naver"),
    "seznam.cz": ("search", "Seznam"),
    "sogou.com": ("search", "Sogou"),
    "so.com": ("search", "Haosou"),
    "kagi.com": ("search", "Kagi"),
    "perplexity.ai": ("search", "Perplexity"),
    "chatgpt.com": ("search", "ChatGPT"),
    "com.google.android.googlequicksearchbox": ("search", "Google"),
    # social
    "facebook.com": ("social", "Facebook"),
    "fb.me": ("social", "Facebook"),
    "instagram.com": ("social", "Instagram"),
    "threads.net": ("social", "Threads"),
    "t.co": ("social", "Twitter"),
    "twitter.com": ("social", "Twitter"),
    "x.com": ("social", "Twitter"),
    "linkedin.com": ("social", "LinkedIn"),
    "lnkd.in": ("social", "LinkedIn"),
    "reddit.com": ("social", "Reddit"),
    "pinterest.com": ("social", "Pinterest"),
    "pin.it": ("social", "Pinterest"),
    "youtube.com": ("social", "YouTube"),
    "youtu.be": ("social", "YouTube"),
    "tiktok.com": ("social", "TikTok"),
    "snapchat.com": ("social", "Snapchat"),
    "tumblr.com": ("social", "Tumblr"),
    "quora.com": ("social", "Quora"),
    "vk.com": ("social", "VK"),
    "ok.ru": ("social", "Odnoklassniki"),
    "weibo.com": ("social", "Weibo"),
    "bsky.app": ("social", "Bluesky"),
    "mastodon.social": ("social", "Mastodon"),
    "news.ycombinator.com": ("social", "Hacker News"),
    "discord.com": ("social", "Discord"),
    "t.me": ("social", "Telegram"),
    "web.whatsapp.com": ("social", "WhatsApp"),
    "wa.me": ("social", "WhatsApp"),
    "com.facebook.katana": ("social", "Facebook"),
    "com.instagram.android": ("social", "Instagram"),
    "com.twitter.android": ("social", "Twitter"),
    "com.linkedin.android": ("social", "LinkedIn"),
    "com.reddit.frontpage": ("social", "Reddit"),
    "org.telegram.messenger": ("social", "Telegram"),
    # email
    "mail.google.com": ("email", "Gmail"),
    "com.google.android.gm": ("email", "Gmail"),
    "outlook.live.com": ("email", "Outlook"),
    "outlook.office.com": ("email", "Outlook"),
    "outlook.office365.com": ("email", "Outlook"),
    "com.microsoft.office.outlook": ("email", "Outlook"),
    "mail.yahoo.com": ("email", "Yahoo Mail"),
    "mail.aol.com": ("email", "AOL Mail"),
    "mail.proton.me": ("email", "Proton Mail"),
    "mail.zoho.com": ("email", "Zoho Mail"),
    "e.mail.ru": ("email", "Mail.ru"),
    "mail.yandex.ru": ("email", "Yandex Mail"),
    "gmx.net": ("email", "GMX"),
    "web.de": ("email", "WEB.DE"),
    # paid
    "googleadservices.com": ("paid", "Google Ads"),
    "doubleclick.net": ("paid", "Google Ads"),
    "googlesyndication.com": ("paid", "Google Ads"),
    "adservice.google.com": ("paid", "Google Ads"),
    "syndicatedsearch.goog": ("paid", "Google Ads"),
    "bat.bing.com": ("paid", "Microsoft Ads"),
    "outbrain.com": ("paid", "Outbrain"),
    "taboola.com": ("paid", "Taboola"),
    "criteo.com": ("paid", "Criteo"),
    "adform.net": ("paid", "Adform"),
}

SEARCH_BRANDS: Mapping[str, str] = {
    "google": "Google",
    "bing": "Bing",
    "yandex": "Yandex",
    "yahoo": "Yahoo",
    "baidu": "Baidu",
    "duckduckgo": "DuckDuckGo",
    "ecosia": "Ecosia",
    "qwant": "Qwant",
    "naver": "Naver",
    "seznam": "Seznam",
}

EMAIL_LABELS = frozenset({"mail", "webmail", "email"})

_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"})


@lru_cache(maxsize=4096)
def classify_host(host: str) -> Entry | None:
    """(medium, source) for an external referring host; None when the table has nothing."""
    host = host.removeprefix("www.")
    labels = host.split(".")
    for start in range(len(labels) - 1):
        entry = HOSTS.get(".".join(labels[start:]))
        if entry is not None:
            return entry
    brand = SEARCH_BRANDS.get(labels[0])
    if brand is not None and _is_public_suffix_like(labels[1:]):
        return ("search", brand)
    if labels[0] in EMAIL_LABELS and len(labels) > 2:
        return ("email", None)
    return None


def _is_public_suffix_like(labels: list[str]) -> bool:
    """``de``, ``com``, ``co.uk``, ``com.br``: a TLD, maybe after a generic second level."""
    if len(labels) == 1:
        return labels[0].isalpha() and len(labels[0]) <= 6
    if len(labels) == 2:
        return labels[0] in _SECOND_LEVEL and labels[1].isalpha() and len(labels[1]) == 2
    return False
