"""What the enrich stage adds to an event, and the per-source options that steer it.

``EnrichedEvent`` is what the enrich stage publishes to ``trackflow.events.enriched.v1``: the
``RawEvent`` (after the source's privacy options: client IP anonymised or removed, configured
fields hashed) plus an ``enrichment``. Every model here is frozen and JSON-friendly:
``model_dump()`` gives plain dicts, lists/tuples, strings, numbers, booleans and ``None``.

``EnrichOptions`` is meant to be embedded in ``EventSource`` (one per source); its defaults are
what a source without options gets.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.envelope import RawEvent

__all__ = [
    "DEFAULT_CLICK_IDS",
    "ENRICHER_NAMES",
    "HASHABLE_ROOTS",
    "Anonymity",
    "Asn",
    "Campaign",
    "ClickIdParam",
    "Device",
    "EnrichOptions",
    "EnrichedEvent",
    "EnricherName",
    "Enrichment",
    "Geo",
    "IpPolicy",
    "Referrer",
    "ReferrerMedium",
]

EnricherName = Literal["geo", "device", "campaign", "referrer", "language", "timezone"]
ENRICHER_NAMES: tuple[EnricherName, ...] = (
    "geo",
    "device",
    "campaign",
    "referrer",
    "language",
    "timezone",
)
ReferrerMedium = Literal["search", "social", "email", "internal", "paid", "unknown"]
IpPolicy = Literal["full", "anonymized", "none"]
HASHABLE_ROOTS = ("properties", "context")

_PARAM = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HASH_PATH = re.compile(r"^(properties|context)(\.[^.\s]+)+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- what the enrichers find -------------------------------------------------------------


class Asn(_Frozen):
    """The autonomous system the address belongs to (MaxMind ASN database)."""

    number: int
    organization: str | None = None


class Anonymity(_Frozen):
    """MaxMind Anonymous-IP flags; all ``False`` when the database does not list the address."""

    is_anonymous: bool = False
    is_anonymous_vpn: bool = False
    is_hosting_provider: bool = False
    is_public_proxy: bool = False
    is_residential_proxy: bool = False
    is_tor_exit_node: bool = False


class Geo(_Frozen):
    """Where the client IP is, from the City database (plus ASN and anonymity when configured).

    Names are English. ``region`` is the most specific subdivision. ``asn`` / ``anonymity`` are
    ``None`` when that database is not configured.
    """

    country_code: str | None = None
    country: str | None = None
    continent_code: str | None = None
    continent: str | None = None
    region_code: str | None = None
    region: str | None = None
    city: str | None = None
    postal_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    accuracy_radius_km: int | None = None
    time_zone: str | None = None
    asn: Asn | None = None
    anonymity: Anonymity | None = None


class Device(_Frozen):
    """What the user agent says (ua-parser, uap-core rules). Unknown families are ``"Other"``."""

    browser: str
    browser_version: str | None = None
    os: str
    os_version: str | None = None
    device: str
    brand: str | None = None
    model: str | None = None
    is_bot: bool = False
    is_mobile: bool = False
    is_tablet: bool = False
    is_pc: bool = False


class Campaign(_Frozen):
    """UTM parameters (``name`` is ``utm_campaign``) and the winning click id, if any."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None
    id: str | None = None
    click_id: str | None = None
    click_id_param: str | None = None
    network: str | None = None


class Referrer(_Frozen):
    """The referring page: host and path only (its query may hold personal data)."""

    host: str
    path: str | None = None
    medium: ReferrerMedium = "unknown"
    source: str | None = None


class Enrichment(_Frozen):
    """Everything the enrich stage found; ``warnings`` holds ``"<enricher>: <error>"`` lines."""

    geo: Geo | None = None
    device: Device | None = None
    campaign: Campaign | None = None
    referrer: Referrer | None = None
    language: str | None = None
    timezone: str | None = None
    ip: str | None = None
    warnings: tuple[str, ...] = ()


class EnrichedEvent(RawEvent):
    """A raw event after the enrich stage (privacy options applied) with its enrichment."""

    enrichment: Enrichment = Field(default_factory=Enrichment)


# -- per-source options ------------------------------------------------------------------


class ClickIdParam(_Frozen):
    """A URL query parameter carrying an ad click id, and the ad network that sets it."""

    param: str
    network: str = Field(min_length=1, max_length=64)

    @field_validator("param")
    @classmethod
    def _param_name(cls, value: str) -> str:
        if not _PARAM.match(value):
            raise ValueError(
                f"click id parameter {value!r} is not a query parameter name "
                "(1-64 letters, digits, '_', '.', '-')"
            )
        return value.lower()


DEFAULT_CLICK_IDS: tuple[ClickIdParam, ...] = (
    ClickIdParam(param="gclid", network="google"),
    ClickIdParam(param="dclid", network="google (display)"),
    ClickIdParam(param="msclkid", network="microsoft"),
    ClickIdParam(param="fbclid", network="facebook"),
    ClickIdParam(param="ttclid", network="tiktok"),
    ClickIdParam(param="li_fat_id", network="linkedin"),
)


class EnrichOptions(_Frozen):
    """How one event source is enriched.

    * ``disabled``: enrichers to skip, by name (``geo``, ``device``, ``campaign``, ``referrer``,
      ``language``, ``timezone``).
    * ``ip``: what is kept of the client IP after the geo lookup: ``full``, ``anonymized``
      (IPv4 /24, IPv6 /48) or ``none``. Applies to ``request.ip``, ``context.ip`` and
      ``enrichment.ip``.
    * ``hash_fields``: dotted paths under ``properties`` or ``context`` whose values are replaced
      by ``sha256(salt + value)`` in hex (every string/number/boolean below the path).
    * ``click_ids``: click-id parameters in order of precedence (the first present wins).
    * ``internal_hosts``: hosts (and their subdomains) whose referrers count as ``internal``,
      besides the page's own host.
    * ``prefer_context_ip``: take the client IP from ``context.ip`` even when the gateway saw
      one (for trusted server-side senders); otherwise ``context.ip`` is used only when the
      request has no IP.
    """

    disabled: tuple[EnricherName, ...] = ()
    ip: IpPolicy = "anonymized"
    hash_fields: tuple[str, ...] = ()
    click_ids: tuple[ClickIdParam, ...] = DEFAULT_CLICK_IDS
    internal_hosts: tuple[str, ...] = ()
    prefer_context_ip: bool = False

    @field_validator("hash_fields")
    @classmethod
    def _hash_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not _HASH_PATH.match(path):
                raise ValueError(
                    f"hash field {path!r} is not a dotted path under "
                    f"{' or '.join(HASHABLE_ROOTS)} (e.g. 'properties.email', "
                    "'context.traits.phone')"
                )
        return value

    @field_validator("internal_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(host.strip().lower().rstrip(".") for host in value if host.strip())
