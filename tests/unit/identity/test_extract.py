"""Identifiers and claims from a RawEvent."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from processors.identity import IdentifyConfig, TraitField, build_claims, extract_identity
from schemas.identity import Identifier
from tests.unit.identity.factories import T0, event


def _found(**fields: Any) -> dict[tuple[str, str], str]:
    extracted = extract_identity(event(**fields), IdentifyConfig())
    return {(i.type, i.value): reason for i, reason in extracted.identifiers}


def test_user_id_and_default_traits_are_read_from_context() -> None:
    found = _found(
        context={
            "user_id": " u-1 ",
            "traits": {"email": "Ann@Example.com", "phone": "+44 20 7946 0958", "name": "Ann"},
        }
    )
    assert found == {
        ("user_id", "u-1"): "observed",
        ("email", "ann@example.com"): "observed",
        ("phone", "442079460958"): "observed",
    }


def test_an_event_without_identity_claims_nothing() -> None:
    extracted = extract_identity(
        event(properties={"user_id": "u-1", "email": "a@b.co"}), IdentifyConfig()
    )
    assert (extracted.user_id, extracted.identifiers, extracted.rejected) == (None, (), ())


def test_identify_events_claim_with_reason_identify() -> None:
    assert _found(type="identify", context={"user_id": 42}) == {("user_id", "42"): "identify"}


def test_blocked_and_malformed_values_are_rejected_with_reasons_not_claimed() -> None:
    extracted = extract_identity(
        event(context={"user_id": "undefined", "traits": {"email": "nope", "phone": "guest"}}),
        IdentifyConfig(),
    )
    assert extracted.identifiers == ()
    assert [(r.identifier_type, r.blocked) for r in extracted.rejected] == [
        ("user_id", True),
        ("email", False),
        ("phone", True),
    ]
    assert "not an address" in extracted.rejected[1].reason


def test_list_values_give_one_identifier_each_without_duplicates() -> None:
    found = _found(context={"traits": {"email": ["a@x.io", "A@X.io ", None, "b@x.io"]}})
    assert found == {("email", "a@x.io"): "observed", ("email", "b@x.io"): "observed"}


def test_configured_paths_fields_and_hashing() -> None:
    config = IdentifyConfig(
        user_id_path="properties.customer.id",
        trait_paths=("context.traits", "properties"),
        trait_fields=(TraitField(name="loyalty_card", type="loyalty"),),
        hashed_types=frozenset({"loyalty"}),
        hash_salt=SecretStr("pepper"),
    )
    extracted = extract_identity(
        event(properties={"customer": {"id": "c-9"}, "loyalty_card": "LC-1"}), config
    )
    digest = hashlib.sha256(b"pepperLC-1").hexdigest()
    assert [i for i, _ in extracted.identifiers] == [
        Identifier(type="user_id", value="c-9"),
        Identifier(type="loyalty", value=digest, hashed=True),
    ]


def test_alias_claims_the_previous_id_as_profile_and_user_id() -> None:
    found = _found(type="alias", context={"user_id": "u-1", "previous_id": "anon-7"})
    assert found == {
        ("user_id", "u-1"): "alias",
        ("profile_id", "anon-7"): "alias",
        ("user_id", "anon-7"): "alias",
    }


def test_alias_from_the_same_profile_claims_no_profile_id() -> None:
    found = _found(type="alias", context={"user_id": "u-1", "previous_id": "p1"})
    assert found == {("user_id", "u-1"): "alias"}


def test_previous_id_outside_alias_events_is_ignored() -> None:
    assert _found(context={"previous_id": "anon-7"}) == {}


def test_claims_carry_the_profile_event_and_user_id() -> None:
    raw = event(context={"traits": {"email": "ann@example.com"}})
    extracted = extract_identity(raw, IdentifyConfig())
    [claim] = build_claims(raw, extracted, profile_id="w1", profile_created_at=T0, user_id="u-9")
    assert claim.key == "email:ann@example.com"
    assert (claim.profile_id, claim.event_id, claim.user_id) == ("w1", "e1", "u-9")
    assert (claim.claimed_at, claim.profile_created_at, claim.reason) == (T0, T0, "observed")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"hashed_types": {"email"}}, "need a hash_salt"),
        ({"hashed_types": {"profile_id"}, "hash_salt": "s"}, "cannot be hashed"),
        ({"user_id_path": "body.user"}, "not a dotted path"),
        ({"session_timeout": 0}, "must be positive"),
        ({"default_country_code": "+44"}, "default_country_code"),
        ({"trait_fields": [{"name": "Email"}]}, "identifier type 'Email'"),
        ({"trait_fields": [{"name": "email"}, {"name": "email", "type": "mail"}]}, "twice"),
    ],
)
def test_bad_configuration_is_refused_naming_the_setting(
    settings: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        IdentifyConfig.model_validate(settings)
