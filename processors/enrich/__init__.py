"""The enrich stage's pure core: GeoIP, device, campaign, referrer, language, time zone, and
the source's privacy options. No Kafka, Faust, psycopg or HTTP client here; the GeoIP reader
and the user-agent parser are injected through :class:`EnrichContext`.

    context = EnrichContext(geo=GeoIP2Lookup(city_db, asn_db, anonymous_db), hash_salt=salt)
    enriched = enrich(event, context.for_source(source_options))
"""

from processors.enrich.context import (
    DEFAULT_ENRICHERS,
    EnrichContext,
    Enricher,
    EnrichmentValue,
    NamedEnricher,
)
from processors.enrich.geo import GeoLookup, InMemoryGeoLookup
from processors.enrich.geoip2_lookup import GeoDatabaseError, GeoIP2Lookup, default_city_database
from processors.enrich.ip import anonymize_ip, is_public, parse_ip
from processors.enrich.pipeline import enrich, enrichment_of
from processors.enrich.privacy import apply_privacy, hash_value
from processors.enrich.user_agent import (
    CachedUserAgentParser,
    UserAgentParser,
    default_user_agent_parser,
)

__all__ = [
    "DEFAULT_ENRICHERS",
    "CachedUserAgentParser",
    "EnrichContext",
    "Enricher",
    "EnrichmentValue",
    "GeoDatabaseError",
    "GeoIP2Lookup",
    "GeoLookup",
    "InMemoryGeoLookup",
    "NamedEnricher",
    "UserAgentParser",
    "anonymize_ip",
    "apply_privacy",
    "default_city_database",
    "default_user_agent_parser",
    "enrich",
    "enrichment_of",
    "hash_value",
    "is_public",
    "parse_ip",
]
