"""The tiny template renderer: lone placeholders keep their type, missing fields are errors."""

from __future__ import annotations

import pytest
from pydantic import JsonValue

from processors.workflow.errors import RenderError
from processors.workflow.scope import Scope
from processors.workflow.templates import render_json, render_text, render_url, render_value
from schemas.rules import Placeholder, parse_template
from tests.unit.workflow._support import T0, event

PROPS = {
    "total": 99.5,
    "qty": 3,
    "name": "Ada",
    "paid": True,
    "gone": None,
    "items": [{"sku": "A-1"}],
    "meta": {"a": 1},
    "query": "a b&c=d/e?f#g",
}


def scope() -> Scope:
    return Scope.of(event(properties=PROPS), {"id": "prof-1", "tags": ["vip"]}, None, T0)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ event.properties.total }}", 99.5),
        ("{{event.properties.qty}}", 3),
        ("{{ event.properties.paid }}", True),
        ("{{ event.properties.gone }}", None),
        ("{{ event.properties.items }}", [{"sku": "A-1"}]),
        ("{{ event.properties.items.0.sku }}", "A-1"),
        ("{{ profile.tags }}", ["vip"]),
        ("  {{ event.properties.qty }}", "  3"),
        ("total: {{ event.properties.total }} EUR", "total: 99.5 EUR"),
        ("{{ event.properties.name }} x{{ event.properties.qty }}", "Ada x3"),
        ("paid={{ event.properties.paid }}", "paid=true"),
        ("gone=[{{ event.properties.gone }}]", "gone=[]"),
        ("meta={{ event.properties.meta }}", 'meta={"a":1}'),
        ("no placeholders", "no placeholders"),
        ("", ""),
        ("{{ event.received_at }}", "2026-03-01T12:00:00Z"),
        ('{{ event.properties.coupon | default: "none" }}', "none"),
        ("{{ event.properties.coupon | default: 0 }}", 0),
        ("{{ event.properties.coupon | default: null }}", None),
        ('{{ event.properties.gone | default: "was null" }}', "was null"),
        ('{{ event.properties.name | default: "unused" }}', "Ada"),
        ("{ single braces } and }}", "{ single braces } and }}"),
    ],
)
def test_render_value(template: str, expected: object) -> None:
    assert render_value(template, scope()) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ event.properties.coupon }}",
        "hello {{ event.properties.coupon }}",
        "{{ event.properties.items.5.sku }}",
        "{{ event.properties.name.first }}",
        "{{ session.id }}",
    ],
)
def test_a_missing_field_raises_naming_it(template: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_value(template, scope())
    assert caught.value.path is not None
    assert caught.value.path in str(caught.value)
    assert "default" in str(caught.value)


def test_render_text_writes_values_as_text() -> None:
    assert render_text("{{ event.properties.qty }}", scope()) == "3"
    assert render_text("{{ event.properties.gone }}", scope()) == ""


def test_render_json_renders_every_string_and_keeps_keys() -> None:
    body: JsonValue = {
        "{{ key }}": "{{ event.properties.qty }}",
        "list": ["x{{ event.properties.qty }}", 1],
    }
    assert render_json(body, scope()) == {"{{ key }}": 3, "list": ["x3", 1]}


def test_render_url_percent_encodes_substituted_values() -> None:
    url = render_url(
        "https://api.example.com/q/{{ event.properties.query }}?n={{ event.properties.name }}",
        scope(),
    )
    assert url == "https://api.example.com/q/a%20b%26c%3Dd%2Fe%3Ff%23g?n=Ada"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ event.properties.total", "unclosed '{{'"),
        ("a {{ event.x }} {{", "unclosed '{{'"),
        ("{{ properties.total }}", "must start with one of event, profile, session"),
        ("{{ event.properties.a b }}", "invalid segment"),
        ("{{ }}", "field path"),
        ("{{ event.x | upper }}", "only 'default: <JSON scalar>'"),
        ("{{ event.x | default: [1] }}", "only 'default: <JSON scalar>'"),
        ("{{ event.x | default: unquoted }}", "only 'default: <JSON scalar>'"),
        ("{{ event.__class__.__mro__ }}", None),  # just a path: resolves to nothing, no code runs
    ],
)
def test_parse_problems(template: str, message: str | None) -> None:
    if message is None:
        parts = parse_template(template)
        assert parts == (Placeholder(("event", "__class__", "__mro__")),)
        with pytest.raises(RenderError):
            render_value(template, scope())
        return
    with pytest.raises(ValueError, match=message.replace("{", "\\{").replace("[", "\\[")):
        parse_template(template)
