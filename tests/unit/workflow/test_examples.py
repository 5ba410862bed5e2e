"""The example rule files load and do what their comments say."""

from __future__ import annotations

import pytest

from processors.workflow import evaluate
from schemas.rules import AddTags, EmitEvent, IncrementTrait, SetTrait
from tests.unit.workflow._support import event, example, profile


@pytest.mark.parametrize("amount", [100.01, 101, 150, "250", 10**9])
def test_high_value_tags_and_emits_on_purchases_over_100(amount: object) -> None:
    result = evaluate(example("high-value.yaml"), event(properties={"amount": amount}), profile())
    assert result.matched_rules == ("high-value",)
    assert result.profile_patch.ops[0] == AddTags(tags=("high-value",))
    assert result.profile_patch.ops[1] == IncrementTrait(trait="purchases.high_value_count", by=1)
    [emitted] = result.emitted_events
    assert emitted.type == "high-value-customer"
    assert emitted.profile_id == "prof-1"
    assert emitted.properties == {"amount": amount, "currency": "EUR", "purchase_event_id": "evt-1"}
    assert [o.status for o in result.outcomes] == ["planned"] * 3


@pytest.mark.parametrize(
    ("event_type", "properties"),
    [
        ("purchase", {"amount": 100}),
        ("purchase", {"amount": 99.99}),
        ("purchase", {"amount": "lots"}),
        ("purchase", {"amount": None}),
        ("purchase", {"amount": True}),
        ("purchase", {}),
        ("page-view", {"amount": 500}),
    ],
)
def test_high_value_does_nothing_otherwise(event_type: str, properties: dict[str, object]) -> None:
    result = evaluate(example("high-value.yaml"), event(event_type, properties=properties))
    assert result.matched_rules == ()
    assert result.actions == ()
    assert result.outcomes == ()


def test_high_value_keeps_the_purchase_currency() -> None:
    result = evaluate(
        example("high-value.yaml"), event(properties={"amount": 120, "currency": "USD"})
    )
    assert result.emitted_events[0].properties["currency"] == "USD"


def test_webhook_example_plans_a_call_with_the_secret_unresolved() -> None:
    signup = event("signup", properties={"email": "ada@corp.example", "plan": "pro"})
    result = evaluate(example("webhook.yaml"), signup, profile(company="ACME"))
    [call] = result.webhook_calls
    assert call.url == "https://crm.example.com/api/v2/contacts?source=web"
    assert call.secret_headers == {"Authorization": "Bearer ${secret:CRM_TOKEN}"}
    assert call.headers == {"X-Trackflow-Profile": "prof-1"}
    assert call.body == {
        "email": "ada@corp.example",
        "plan": "pro",
        "profile_id": "prof-1",
        "company": "ACME",
    }
    assert (call.timeout_seconds, call.max_attempts, call.event_id) == (5.0, 6, "evt-1")
    assert result.profile_patch.ops == (
        SetTrait(trait="crm_synced_at", value="2026-03-01T12:00:00Z"),
    )
    [message] = result.productions
    assert (message.topic, message.key) == ("crm.signups", "prof-1")


@pytest.mark.parametrize(
    ("email", "synced_at", "expected"),
    [
        ("ada@gmail.com", None, False),  # a free-mail address
        ("ada@corp.example", "2026-02-20T00:00:00Z", False),  # synced 9 days ago
        ("ada@corp.example", "2026-01-01T00:00:00Z", True),  # synced 2 months ago
        ("ada@corp.example", None, True),
    ],
)
def test_webhook_example_conditions(email: str, synced_at: str | None, expected: bool) -> None:
    traits = {"crm_synced_at": synced_at} if synced_at else {}
    result = evaluate(
        example("webhook.yaml"), event("signup", properties={"email": email}), profile([], **traits)
    )
    assert bool(result.webhook_calls) is expected


def test_the_example_emit_is_an_emit_event_action() -> None:
    result = evaluate(example("high-value.yaml"), event(properties={"amount": 500}))
    assert isinstance(result.actions[2], EmitEvent)
