"""Trait merging per field policy."""

from __future__ import annotations

import pytest
from pydantic import JsonValue

from processors.identity import TraitPolicy, TraitValue, merge_trait, merge_traits
from schemas.identity import DroppedTrait
from tests.unit.identity.factories import at, profile


def _side(value: JsonValue, minutes: float, profile_id: str = "a") -> TraitValue:
    return TraitValue(value, at(minutes), profile_id)


def test_latest_wins_and_the_older_value_is_dropped() -> None:
    kept, dropped = merge_trait("city", _side("Leeds", 5, "a"), _side("York", 9, "b"), "latest")
    assert (kept.value, kept.updated_at) == ("York", at(9))
    assert dropped == (DroppedTrait(field="city", value="Leeds", updated_at=at(5), profile_id="a"),)


def test_latest_ties_are_broken_by_value_not_by_side() -> None:
    one, _ = merge_trait("city", _side("Leeds", 5, "a"), _side("York", 5, "b"), "latest")
    other, _ = merge_trait("city", _side("York", 5, "b"), _side("Leeds", 5, "a"), "latest")
    assert one.value == other.value == "York"


def test_equal_values_drop_nothing() -> None:
    assert merge_trait("city", _side("York", 5), _side("York", 5, "b"), "latest")[1] == ()


def test_union_joins_lists_without_duplicates_in_a_fixed_order() -> None:
    kept, dropped = merge_trait(
        "likes", _side(["tea", "jam"], 1), _side(["jam", "cake"], 2), "union"
    )
    assert (kept.value, kept.updated_at, dropped) == (["cake", "jam", "tea"], at(2), ())


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("tea", ["jam"], ["jam", "tea"]),
        (None, ["jam"], ["jam"]),
        ([{"k": 1}], [{"k": 1}], [{"k": 1}]),
    ],
)
def test_union_treats_scalars_as_one_item_and_null_as_none(
    a: JsonValue, b: JsonValue, expected: JsonValue
) -> None:
    assert merge_trait("x", _side(a, 1), _side(b, 2), "union")[0].value == expected


def test_sum_adds_counters() -> None:
    kept, dropped = merge_trait("visits", _side(3, 1), _side(4, 2), "sum")
    assert (kept.value, kept.updated_at, dropped) == (7, at(2), ())


def test_sum_of_a_non_number_falls_back_to_latest() -> None:
    kept, dropped = merge_trait("visits", _side(True, 1), _side(4, 2), "sum")
    assert kept.value == 4
    assert [d.value for d in dropped] == [True]


def test_auto_unions_lists_and_keeps_the_latest_scalar() -> None:
    assert merge_trait("x", _side(["a"], 1), _side(["b"], 2), "auto")[0].value == ["a", "b"]
    assert merge_trait("x", _side("a", 1), _side("b", 2), "auto")[0].value == "b"


def test_merge_traits_applies_the_policy_per_field_and_keeps_one_sided_fields() -> None:
    policy = TraitPolicy(fields={"visits": "sum", "segments": "union"})
    first = profile(
        "a",
        0,
        traits={"visits": 2, "segments": ["vip"], "name": "Ann", "plan": "free"},
        trait_times={"name": at(10), "plan": at(1)},
    )
    second = profile(
        "b",
        5,
        traits={"visits": 5, "segments": "new", "name": "Annie", "city": "York"},
        trait_times={"name": at(20)},
    )
    merged = merge_traits(first, second, policy)
    assert merged.traits == {
        "city": "York",
        "name": "Annie",
        "plan": "free",
        "segments": ["new", "vip"],
        "visits": 7,
    }
    assert merged.trait_times == {
        "city": at(5),  # without a time a trait counts as set when its profile was created
        "name": at(20),
        "plan": at(1),
        "segments": at(5),
        "visits": at(5),
    }
    assert merged.dropped == (
        DroppedTrait(field="name", value="Ann", updated_at=at(10), profile_id="a"),
    )


def test_the_policy_defaults_and_per_field_lookups() -> None:
    policy = TraitPolicy(default="latest", fields={"n": "sum"})
    assert (policy.for_field("n"), policy.for_field("other")) == ("sum", "latest")
    assert TraitPolicy().for_field("anything") == "auto"
