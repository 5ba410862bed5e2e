"""Blocked placeholder values become identity conflicts, never claims."""

from __future__ import annotations

from processors.identity import IdentifyConfig, blocked_conflicts, extract_identity, identify
from tests.unit.identity.factories import event

CONFIG = IdentifyConfig()


def test_a_blocked_value_keeps_the_text_sent_and_a_malformed_one_does_not() -> None:
    extracted = extract_identity(
        event(context={"traits": {"email": " NULL ", "phone": "not a phone"}}), CONFIG
    )
    assert [(r.identifier_type, r.blocked, r.value) for r in extracted.rejected] == [
        ("email", True, " NULL "),
        ("phone", False, None),
    ]


def test_each_blocked_value_is_one_conflict_on_the_canonical_profile() -> None:
    result = identify(
        event(context={"user_id": "guest", "traits": {"email": "undefined", "phone": ""}}),
        None,
        CONFIG,
    )
    conflicts = blocked_conflicts(result)
    assert result.claims == ()
    assert [(c.identifier.key, c.profile_ids, c.reason) for c in conflicts] == [
        ("user_id:guest", ("p1",), "blocked_identifier"),
        ("email:undefined", ("p1",), "blocked_identifier"),
        ("phone:''", ("p1",), "blocked_identifier"),
    ]
    assert all("never merged" in c.detail and c.event_id == "e1" for c in conflicts)


def test_the_same_placeholder_again_gives_the_same_conflict_id() -> None:
    first = identify(event("e1", context={"traits": {"email": "null"}}), None, CONFIG)
    again = identify(event("e2", context={"traits": {"email": "null"}}), first.state, CONFIG)
    other = identify(
        event("e3", profile_id="p2", context={"traits": {"email": "null"}}), None, CONFIG
    )
    [a], [b], [c] = (blocked_conflicts(r) for r in (first, again, other))
    assert a.id == b.id and a.id != c.id


def test_an_event_without_blocked_values_has_no_conflicts() -> None:
    result = identify(event(context={"traits": {"email": "ann@example.com"}}), None, CONFIG)
    assert blocked_conflicts(result) == ()
