"""The identify stage's wiring: configuration from settings, and a batch decided."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from processors.identify_stage import identify_batch, identity_configs
from processors.identity_store import KnownProfile
from processors.store_step import Message
from schemas import encode
from schemas.identity import IdentifyState, IdentityClaim
from tests.unit.identity.factories import T0, at, event
from trackflow.settings import Settings, SettingsError, load_settings


def message(offset: int) -> Message:
    return Message("trackflow.events.raw.v1", 0, offset, b"{}")


def test_defaults_match_the_documented_ones() -> None:
    identify_config, merge_config = identity_configs(Settings())
    assert [(f.name, f.kind) for f in identify_config.trait_fields] == [
        ("email", "email"),
        ("phone", "phone"),
    ]
    assert identify_config.session_timeout == timedelta(minutes=30)
    assert "null" in identify_config.blocked_values and "guest" in merge_config.blocked_values
    assert (merge_config.max_profiles_per_merge, merge_config.allow_user_id_conflict) == (10, False)


def test_settings_configure_fields_hashing_blocked_values_and_guardrails() -> None:
    settings = Settings(
        identity_trait_fields="email:email,customer_no:text:customer",
        identity_hashed_types="email",
        hash_salt="pepper",  # type: ignore[arg-type]
        identity_blocked_values="test@example.com, nobody",
        session_timeout_minutes=5,
        max_profiles_per_merge=3,
        allow_user_id_conflict=True,
    )
    identify_config, merge_config = identity_configs(settings)
    assert [f.identifier_type for f in identify_config.trait_fields] == ["email", "customer"]
    assert identify_config.hashed_types == {"email"} and identify_config.salt == b"pepper"
    assert {"test@example.com", "nobody"} <= merge_config.blocked_values
    assert identify_config.session_timeout == timedelta(minutes=5)
    assert (merge_config.max_profiles_per_merge, merge_config.allow_user_id_conflict) == (3, True)


def test_hashing_without_a_salt_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="TRACKFLOW_HASH_SALT"):
        identity_configs(Settings(identity_hashed_types="email"))


def test_a_malformed_trait_field_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="TRACKFLOW_IDENTITY_TRAIT_FIELDS"):
        load_settings(identity_trait_fields="email:mail")


def test_a_merged_id_is_identified_as_its_canonical_profile() -> None:
    config, _ = identity_configs(Settings())
    known = {"p1": KnownProfile("p1", at(1), "w", canonical_created_at=T0)}
    batch = [
        (message(0), event("e1", context={"traits": {"email": "ann@example.com"}})),
        (message(1), event("e2", received_at=at(2))),
    ]
    result = identify_batch(batch, {}, known, config)
    assert [key for key, _ in result.outputs] == [b"w", b"w"]
    sent = [orjson.loads(value) for _, value in result.outputs]
    assert {e["profile_id"] for e in sent} == {"w"}
    assert sent[0]["session_id"] == sent[1]["session_id"]
    [(key, value)] = result.claims
    claim = IdentityClaim.model_validate_json(value)
    assert key == b"email:ann@example.com"
    assert (claim.profile_id, claim.profile_created_at) == ("w", T0)
    assert result.states["p1"].canonical_id == "w" and result.new_sessions == 1


def test_stored_state_continues_the_session_and_claims_once() -> None:
    config, _ = identity_configs(Settings())
    traits = {"traits": {"email": "ann@example.com"}}
    first = identify_batch([(message(0), event("e1", context=traits))], {}, {}, config)
    state = first.states["p1"]
    assert isinstance(state, IdentifyState)
    assert [key for key, _ in first.claims] == [b"email:ann@example.com", b"profile_id:p1"]
    later = event("e2", received_at=at(10), context=traits)
    second = identify_batch([(message(1), later)], {"p1": state}, {}, config)
    assert second.claims == [] and second.new_sessions == 0
    assert orjson.loads(second.outputs[0][1])["session_id"] == state.session.id  # type: ignore[union-attr]


def test_a_profile_seen_first_holds_its_own_id_so_an_alias_naming_it_merges_later() -> None:
    config, _ = identity_configs(Settings())
    result = identify_batch([(message(0), event("e1", received_at=at(3)))], {}, {}, config)
    [(key, value)] = result.claims
    claim = IdentityClaim.model_validate_json(value)
    assert key == b"profile_id:p1"
    assert (claim.profile_id, claim.reason, claim.profile_created_at) == ("p1", "alias", at(3))


def test_an_event_postgresql_cannot_hold_fails_with_the_reason_and_the_rest_goes_on() -> None:
    config, _ = identity_configs(Settings())
    bad = event("e1", context={"user_id": "u\x001"})
    result = identify_batch([(message(0), bad), (message(1), event("e2"))], {}, {}, config)
    [failure] = result.failures
    assert (failure.stage, failure.code, failure.event_id, failure.offset) == (
        "identify",
        "unstorable",
        "e1",
        0,
    )
    assert failure.reason == "user_id contains a NUL character, which PostgreSQL cannot store"
    assert [orjson.loads(value)["id"] for _, value in result.outputs] == ["e2"]


def test_a_profile_less_event_is_forwarded_as_it_came_with_no_state_or_claims() -> None:
    config, _ = identity_configs(Settings())
    less = event(
        "e1",
        profile_id="k-1",
        options={"profile_less": True},
        context={"traits": {"email": "ann@example.com"}},
    )
    result = identify_batch([(message(0), less)], {}, {}, config)
    assert result.outputs == [(b"k-1", encode(less))]
    assert (result.claims, result.states, result.new_sessions) == ([], {}, 0)
