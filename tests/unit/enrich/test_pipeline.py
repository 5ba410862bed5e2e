"""enrich(): the enrichers composed as a list, per-source toggles, warnings, the output shape."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import processors.enrich
from processors.enrich import DEFAULT_ENRICHERS, EnrichContext, InMemoryGeoLookup, enrich
from schemas import RawEvent
from schemas.enrichment import ENRICHER_NAMES, EnrichedEvent, EnricherName, EnrichOptions, Geo
from tests.unit.enrich.helpers import make_event
from tests.unit.enrich.test_user_agent import IPHONE

LOOKUP = InMemoryGeoLookup({"81.2.69.0/24": Geo(city="London", country_code="GB")})
EVENT = make_event(
    ip="81.2.69.142",
    user_agent=IPHONE,
    accept_language="de-DE,de;q=0.9",
    context={
        "page": {
            "url": "https://shop.example.com/?utm_source=news&gclid=G",
            "referrer": "https://www.google.com/",
        },
        "timezone": "Europe/Berlin",
    },
)


def test_every_enricher_runs_by_default() -> None:
    found = enrich(EVENT, EnrichContext(geo=LOOKUP)).enrichment
    assert found.geo == Geo(city="London", country_code="GB")
    assert found.device is not None
    assert found.campaign is not None
    assert found.referrer is not None
    assert (found.language, found.timezone, found.ip) == ("de-DE", "Europe/Berlin", "81.2.69.0")
    assert found.warnings == ()


def test_the_default_list_names_every_enricher_once() -> None:
    assert tuple(name for name, _ in DEFAULT_ENRICHERS) == ENRICHER_NAMES


@pytest.mark.parametrize("name", ENRICHER_NAMES)
def test_each_enricher_can_be_turned_off_per_source(name: EnricherName) -> None:
    base = EnrichContext(geo=LOOKUP)
    found = enrich(EVENT, base.for_source(EnrichOptions(disabled=(name,)))).enrichment
    assert getattr(found, name) is None
    others = [other for other in ENRICHER_NAMES if other != name]
    assert all(getattr(found, other) is not None for other in others)


def test_an_unknown_enricher_name_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="'geo', 'device', 'campaign'"):
        EnrichOptions.model_validate({"disabled": ["gps"]})


def test_a_failing_enricher_adds_a_warning_and_the_event_goes_on() -> None:
    def broken(event: RawEvent, context: EnrichContext) -> Geo | None:
        raise RuntimeError("database closed")

    enrichers = [("geo", broken), *[item for item in DEFAULT_ENRICHERS if item[0] != "geo"]]
    found = enrich(EVENT, EnrichContext(geo=LOOKUP, enrichers=enrichers))
    assert found.enrichment.warnings == ("geo: RuntimeError: database closed",)
    assert found.enrichment.geo is None
    assert found.enrichment.device is not None
    assert found.enrichment.ip == "81.2.69.0"  # privacy still applied


def test_a_disabled_failing_enricher_does_not_run() -> None:
    def broken(event: RawEvent, context: EnrichContext) -> Geo | None:
        raise AssertionError("must not run")

    ctx = EnrichContext(enrichers=[("geo", broken)], options=EnrichOptions(disabled=("geo",)))
    assert enrich(EVENT, ctx).enrichment.warnings == ()


def test_the_enriched_event_keeps_the_raw_event_and_serialises_with_orjson() -> None:
    found = enrich(EVENT, EnrichContext(geo=LOOKUP))
    assert isinstance(found, EnrichedEvent)
    assert found.model_dump(exclude={"enrichment", "request"}) == EVENT.model_dump(
        exclude={"request"}
    )
    decoded = orjson.loads(orjson.dumps(found.model_dump()))
    assert decoded["enrichment"]["geo"]["city"] == "London"
    assert decoded["enrichment"]["warnings"] == []
    assert EnrichedEvent.model_validate(decoded) == found
    orjson.dumps(found.enrichment.model_dump())


def test_an_empty_event_enriches_to_nothing() -> None:
    found = enrich(make_event(), EnrichContext(geo=LOOKUP)).enrichment
    assert found.model_dump() == {
        "geo": None,
        "device": None,
        "campaign": None,
        "referrer": None,
        "language": None,
        "timezone": None,
        "ip": None,
        "warnings": (),
    }


def test_the_public_api_is_pinned() -> None:
    assert sorted(processors.enrich.__all__) == sorted(
        [
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
    )
    assert all(hasattr(processors.enrich, name) for name in processors.enrich.__all__)


def test_the_stage_imports_no_io_client() -> None:
    package = Path(processors.enrich.__file__).parent
    banned = ("aiokafka", "faust", "psycopg", "httpx", "requests", "urllib.request", "fastapi")
    for module in package.glob("*.py"):
        imports = [
            line.split()[1]
            for line in module.read_text(encoding="utf-8").splitlines()
            if line.startswith(("import ", "from "))
        ]
        assert not [name for name in imports if name.startswith(banned)], module.name


def test_options_round_trip_through_json_as_on_the_config_topic() -> None:
    options = EnrichOptions(
        disabled=("geo",),
        ip="none",
        hash_fields=("properties.email",),
        internal_hosts=("Shop.Example.com.",),
    )
    assert options.internal_hosts == ("shop.example.com",)
    assert EnrichOptions.model_validate_json(options.model_dump_json()) == options
    assert EnrichOptions.model_validate({}) == EnrichOptions()


def test_oversized_inputs_are_not_kept_in_the_caches() -> None:
    """Addresses are checked for length before the caches; URLs are cut to MAX_URL first."""
    from processors.enrich import ip

    before = ip._parse_ip.cache_info().currsize
    huge = "1" * 100_000
    event = make_event(ip=huge, origin=huge, referer=huge, context={"page": {"url": huge}})
    found = enrich(event, EnrichContext(geo=LOOKUP))
    assert (found.enrichment.ip, found.enrichment.referrer, found.request.ip) == (None, None, None)
    assert ip._parse_ip.cache_info().currsize == before
