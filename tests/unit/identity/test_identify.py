"""The identify stage end to end over its own state."""

from __future__ import annotations

import pytest

from processors.identity import (
    MAX_CLAIMED,
    IdentifyConfig,
    MergeCycleError,
    apply_alias,
    identify,
)
from schemas.identity import IdentifyState, ProfileAlias
from tests.unit.identity.factories import T0, at, event

CONFIG = IdentifyConfig()
TRAITS = {"user_id": "u-1", "traits": {"email": "Ann@Example.com"}}


def test_a_new_profile_gets_state_a_session_and_claims() -> None:
    result = identify(event(session_id="s1", context=TRAITS), None, CONFIG)
    assert (result.is_new_profile, result.is_new_session, result.session_change) == (
        True,
        True,
        "first",
    )
    assert (result.event.profile_id, result.event.session_id, result.original_profile_id) == (
        "p1",
        "s1",
        "p1",
    )
    assert [c.key for c in result.claims] == ["user_id:u-1", "email:ann@example.com"]
    assert {(c.profile_id, c.user_id, c.profile_created_at) for c in result.claims} == {
        ("p1", "u-1", T0)
    }
    assert (result.state.created_at, result.state.user_id, result.state.session) == (
        T0,
        "u-1",
        result.session,
    )


def test_a_known_profile_continues_and_claims_each_identifier_once() -> None:
    first = identify(event("e1", session_id="s1", context=TRAITS), None, CONFIG)
    second = identify(
        event("e2", session_id="s1", received_at=at(5), context=TRAITS), first.state, CONFIG
    )
    assert (second.is_new_profile, second.session_change, second.session.event_count) == (
        False,
        "continued",
        2,
    )
    assert second.claims == ()


def test_the_user_id_seen_earlier_goes_with_later_claims() -> None:
    first = identify(event("e1", context={"user_id": "u-1"}), None, CONFIG)
    later = identify(
        event("e2", context={"traits": {"phone": "+44 20 7946 0958"}}), first.state, CONFIG
    )
    [claim] = later.claims
    assert (claim.key, claim.user_id) == ("phone:442079460958", "u-1")


def test_a_merged_profile_resolves_to_its_canonical_id() -> None:
    state = apply_alias(
        identify(event(), None, CONFIG).state,
        ProfileAlias(alias_id="p1", canonical_id="w", merged_at=T0),
    )
    result = identify(event("e2", received_at=at(1), context=TRAITS), state, CONFIG)
    assert (result.event.profile_id, result.original_profile_id, result.is_new_profile) == (
        "w",
        "p1",
        False,
    )
    assert {(c.profile_id, c.profile_created_at) for c in result.claims} == {("w", None)}
    assert result.session.profile_id == "p1"  # the session stays with the profile id it began on


def test_an_alias_seen_before_any_event_is_not_a_new_profile() -> None:
    state = apply_alias(None, ProfileAlias(alias_id="p1", canonical_id="w", merged_at=T0))
    result = identify(event(), state, CONFIG)
    assert (result.is_new_profile, result.event.profile_id) == (False, "w")


def test_an_alias_onto_itself_is_refused() -> None:
    with pytest.raises(MergeCycleError):
        apply_alias(None, ProfileAlias(alias_id="p1", canonical_id="p1", merged_at=T0))


def test_rejected_identifiers_are_reported() -> None:
    result = identify(event(context={"user_id": "null"}), None, CONFIG)
    assert result.claims == ()
    assert [(r.identifier_type, r.blocked) for r in result.rejected] == [("user_id", True)]


def test_claimed_digests_are_bounded() -> None:
    state = IdentifyState(
        profile_id="p1", canonical_id="p1", claimed=tuple(str(i) for i in range(MAX_CLAIMED))
    )
    result = identify(event(context=TRAITS), state, CONFIG)
    assert len(result.state.claimed) == MAX_CLAIMED
    assert result.state.claimed[-2:] != state.claimed[-2:]
