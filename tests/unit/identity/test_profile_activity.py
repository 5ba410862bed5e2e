"""The store's profile activity: identify traits (latest wins) and canonical profiles."""

from __future__ import annotations

from processors.store import ProfileActivity, canonical_activity, identify_traits
from tests.unit.identity.factories import at


def activity(
    profile_id: str, first: float, last: float, count: int, **fields: object
) -> ProfileActivity:
    return ProfileActivity(profile_id, at(first), at(last), count, **fields)  # type: ignore[arg-type]


def test_identify_traits_latest_event_wins_per_trait() -> None:
    traits, times = identify_traits(
        [
            (at(5), {"plan": "pro", "name": "Ann"}),
            (at(1), {"plan": "free", "age": 30}),
            (at(3), None),
        ]
    )
    assert traits == {"plan": "pro", "name": "Ann", "age": 30}
    assert times == {"plan": at(5), "name": at(5), "age": at(1)}


def test_merged_ids_give_their_activity_to_the_canonical_profile_in_id_order() -> None:
    rows = [
        activity("z", 0, 2, 2, geo={"city": "Milton"}, traits={"a": 1}, trait_times={"a": at(2)}),
        activity("b", 1, 5, 1, traits={"a": 2, "b": 1}, trait_times={"a": at(5), "b": at(5)}),
        activity("a", 3, 4, 4, device={"os": "iOS"}),
    ]
    combined = canonical_activity(rows, {"b": "a"})
    assert [c.profile_id for c in combined] == ["a", "z"]
    a = combined[0]
    assert (a.first_at, a.last_at, a.count) == (at(1), at(5), 5)
    assert a.device == {"os": "iOS"} and a.traits == {"a": 2, "b": 1}


def test_an_older_trait_never_overwrites_a_newer_one_when_combining() -> None:
    newer = activity("a", 0, 9, 1, traits={"plan": "pro"}, trait_times={"plan": at(9)})
    older = activity("b", 0, 1, 1, traits={"plan": "free"}, trait_times={"plan": at(1)})
    for rows in ([newer, older], [older, newer]):
        [combined] = canonical_activity(rows, {"b": "a"})
        assert combined.traits == {"plan": "pro"} and combined.trait_times == {"plan": at(9)}


def test_unmerged_ids_are_kept_as_they_are() -> None:
    rows = [activity("b", 0, 1, 1), activity("a", 0, 1, 1)]
    assert canonical_activity(rows, {}) == sorted(rows, key=lambda r: r.profile_id)
