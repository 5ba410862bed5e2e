"""Language (event context, then Accept-Language) and time zone."""

from __future__ import annotations

from typing import Any

import pytest

from processors.enrich import EnrichContext, enrich
from processors.enrich.language import normalize_language_tag, preferred_language
from schemas.enrichment import Enrichment
from tests.unit.enrich.helpers import make_event


def enrichment(context: dict[str, Any], accept_language: str | None = None) -> Enrichment:
    event = make_event(context=context, accept_language=accept_language)
    return enrich(event, EnrichContext()).enrichment


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("da, en-gb;q=0.8, en;q=0.7", "da"),
        ("en-GB;q=0.5, fr-CH, fr;q=0.9", "fr-CH"),
        ("de;q=0.5, en;q=0.5", "de"),  # the first of equals
        ("*;q=1, pt-br;q=0.9", "pt-BR"),
        ("en-us", "en-US"),
        ("zh-hant-tw,zh;q=0.8", "zh-Hant-TW"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("es-419", "es-419"),
        ("fr;q=0, de;q=0.1", "de"),
        ("en;q=abc, de;q=0.2", "de"),
        ("en;q=1.5, de;q=0.2", "de"),
        ("en;q=nan, de;q=0.2", "de"),
        ("x-klingon, i-default", None),
        ("", None),
        (None, None),
        (",,,;;;", None),
    ],
)
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert preferred_language(header) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("en_us", "en-US"), ("EN", "en"), ("de-DE-1996", "de-DE-1996"), ("e", None), ("en-", None)],
)
def test_tag_normalisation(tag: str, expected: str | None) -> None:
    assert normalize_language_tag(tag) == expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"locale": "nl-NL"}, "nl-NL"),
        ({"language": "pl"}, "pl"),
        ({"browser": {"local": {"browser": {"language": "it-IT"}}}}, "it-IT"),
        ({"browser": {"browser": {"language": "sv_se"}}}, "sv-SE"),
        ({"locale": "garbage!!", "browser": {"local": {"browser": {"language": "fi"}}}}, "fi"),
        ({}, "da"),  # from the header
    ],
)
def test_language_from_the_context_before_the_header(
    context: dict[str, Any], expected: str
) -> None:
    assert enrichment(context, accept_language="da, en;q=0.5").language == expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"timezone": "Europe/Berlin"}, "Europe/Berlin"),
        (
            {"time": {"local": "1/2/2026", "tz": "America/Argentina/Buenos_Aires"}},
            "America/Argentina/Buenos_Aires",
        ),
        ({"timezone": "UTC"}, "UTC"),
        ({"timezone": "Etc/GMT+2"}, "Etc/GMT+2"),
        ({"timezone": "Europe/Berlin; DROP TABLE"}, None),
        ({"timezone": "../../etc/passwd"}, None),
        ({"timezone": 3}, None),
        ({"timezone": "bad zone", "time": {"tz": "Asia/Tokyo"}}, "Asia/Tokyo"),
        ({}, None),
    ],
)
def test_time_zone(context: dict[str, Any], expected: str | None) -> None:
    assert enrichment(context).timezone == expected
