"""What the enrich stage needs besides the event: seams (GeoIP, user-agent parser), the hash
salt, the source's options and the list of enrichers.

Build one :class:`EnrichContext` per process and derive one per source with
:meth:`EnrichContext.for_source` (cheap; cache it by source id until the source changes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from processors.enrich.campaign import campaign
from processors.enrich.geo import GeoLookup, geo
from processors.enrich.language import language, timezone
from processors.enrich.referrer import referrer
from processors.enrich.user_agent import UserAgentParser, default_user_agent_parser, device
from schemas import RawEvent
from schemas.enrichment import Campaign, Device, EnricherName, EnrichOptions, Geo, Referrer

__all__ = ["DEFAULT_ENRICHERS", "EnrichContext", "Enricher", "EnrichmentValue", "NamedEnricher"]

EnrichmentValue = Geo | Device | Campaign | Referrer | str | None
Enricher = Callable[[RawEvent, "EnrichContext"], EnrichmentValue]
"""One enricher: the event and the context in, the value of one ``Enrichment`` field out."""

NamedEnricher = tuple[EnricherName, Enricher]
"""An enricher under the name of the ``Enrichment`` field it fills (and is disabled by)."""

DEFAULT_ENRICHERS: tuple[NamedEnricher, ...] = (
    ("geo", geo),
    ("device", device),
    ("campaign", campaign),
    ("referrer", referrer),
    ("language", language),
    ("timezone", timezone),
)


@dataclass(frozen=True, slots=True)
class EnrichContext:
    """``geo=None`` turns geo off (no database); ``hash_salt`` comes from the settings."""

    geo: GeoLookup | None = None
    user_agents: UserAgentParser = field(default_factory=default_user_agent_parser)
    hash_salt: bytes = b""
    options: EnrichOptions = field(default_factory=EnrichOptions)
    enrichers: Sequence[NamedEnricher] = DEFAULT_ENRICHERS
    click_ids: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    """``options.click_ids`` as ``(param, network)`` pairs: cache keys that hash in C."""

    def __post_init__(self) -> None:
        pairs = tuple((option.param, option.network) for option in self.options.click_ids)
        object.__setattr__(self, "click_ids", pairs)

    def for_source(self, options: EnrichOptions) -> EnrichContext:
        """This context with one source's options."""
        return replace(self, options=options)
