"""UTM parameters and click ids: where they are read from and which wins."""

from __future__ import annotations

from typing import Any

import pytest

from processors.enrich import EnrichContext, enrich
from schemas.enrichment import Campaign, ClickIdParam, EnrichOptions
from tests.unit.enrich.helpers import make_event

URL = (
    "https://shop.example.com/landing?utm_source=newsletter&utm_medium=email"
    "&utm_campaign=spring%20sale&utm_term=shoes&utm_content=hero&utm_id=42"
)


def campaign_of(context: dict[str, Any], options: EnrichOptions | None = None) -> Campaign | None:
    ctx = EnrichContext(options=options or EnrichOptions())
    return enrich(make_event(context=context), ctx).enrichment.campaign


def test_every_utm_parameter_from_the_page_url() -> None:
    assert campaign_of({"page": {"url": URL}}) == Campaign(
        source="newsletter",
        medium="email",
        name="spring sale",
        term="shoes",
        content="hero",
        id="42",
    )


def test_tracardi_context_utm_wins_over_the_url_and_is_not_mixed_with_it() -> None:
    context = {"page": {"url": URL}, "utm": {"source": "tracker", "campaign": "c1"}}
    assert campaign_of(context) == Campaign(source="tracker", name="c1")


def test_segment_context_campaign() -> None:
    context = {"campaign": {"name": "launch", "source": "twitter", "medium": "social"}}
    assert campaign_of(context) == Campaign(source="twitter", medium="social", name="launch")


def test_context_utm_wins_over_context_campaign() -> None:
    context = {"utm": {"utm_source": "a"}, "campaign": {"source": "b", "name": "n"}}
    assert campaign_of(context) == Campaign(source="a")


def test_an_empty_explicit_object_falls_through_to_the_url() -> None:
    context = {"page": {"url": URL}, "utm": {"source": "  ", "medium": None}, "campaign": {}}
    found = campaign_of(context)
    assert found is not None
    assert found.source == "newsletter"


def test_utm_names_are_case_insensitive_and_the_first_value_wins() -> None:
    url = "https://x.test/?UTM_Source=First&utm_source=second&utm_medium="
    assert campaign_of({"page": {"url": url}}) == Campaign(source="First")


def test_utm_in_a_single_page_app_fragment() -> None:
    url = "https://x.test/#/landing?utm_source=spa"
    assert campaign_of({"page": {"url": url}}) == Campaign(source="spa")


def test_numbers_in_explicit_objects_are_text() -> None:
    assert campaign_of({"utm": {"id": 7, "source": True}}) == Campaign(id="7")


@pytest.mark.parametrize(
    ("param", "network"),
    [
        ("gclid", "google"),
        ("dclid", "google (display)"),
        ("msclkid", "microsoft"),
        ("fbclid", "facebook"),
        ("ttclid", "tiktok"),
        ("li_fat_id", "linkedin"),
    ],
)
def test_each_click_id_sets_its_network(param: str, network: str) -> None:
    found = campaign_of({"page": {"url": f"https://x.test/?{param}=abc123"}})
    assert found == Campaign(click_id="abc123", click_id_param=param, network=network)


def test_the_first_configured_click_id_wins_whatever_the_url_order() -> None:
    url = "https://x.test/?fbclid=F&msclkid=M&gclid=G"
    found = campaign_of({"page": {"url": url}})
    assert found is not None
    assert (found.click_id_param, found.click_id, found.network) == ("gclid", "G", "google")


def test_the_configured_order_decides() -> None:
    options = EnrichOptions(
        click_ids=(
            ClickIdParam(param="fbclid", network="facebook"),
            ClickIdParam(param="gclid", network="google"),
        )
    )
    url = "https://x.test/?gclid=G&fbclid=F"
    found = campaign_of({"page": {"url": url}}, options)
    assert found is not None
    assert (found.click_id_param, found.network) == ("fbclid", "facebook")


def test_a_click_id_only_configured_parameter_is_read() -> None:
    options = EnrichOptions(click_ids=(ClickIdParam(param="wbraid", network="google"),))
    assert campaign_of({"page": {"url": "https://x.test/?gclid=G"}}, options) is None
    found = campaign_of({"page": {"url": "https://x.test/?WBRAID=W"}}, options)
    assert found == Campaign(click_id="W", click_id_param="wbraid", network="google")


def test_utm_and_click_id_together() -> None:
    found = campaign_of({"page": {"url": URL + "&gclid=G"}})
    assert found is not None
    assert (found.source, found.click_id) == ("newsletter", "G")


def test_a_click_id_in_an_explicit_object() -> None:
    found = campaign_of({"utm": {"source": "s", "gclid": "G"}})
    assert found == Campaign(source="s", click_id="G", click_id_param="gclid", network="google")


@pytest.mark.parametrize(
    "context",
    [{}, {"page": {"url": "https://x.test/plain"}}, {"page": {"url": "https://x.test/?q=1"}}],
)
def test_nothing_campaign_like_gives_none(context: dict[str, Any]) -> None:
    assert campaign_of(context) is None


def test_a_bad_click_id_parameter_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"click id parameter 'g clid' is not a query parameter"):
        ClickIdParam(param="g clid", network="google")
