"""plan_merge: winner rule and guardrails; merge_profiles: traits, tags, history."""

from __future__ import annotations

import pytest

from processors.identity import (
    InvalidMerge,
    MergeConfig,
    TraitPolicy,
    claimant_from_claim,
    claimant_of,
    merge_profiles,
    plan_merge,
)
from schemas.identity import (
    DroppedTrait,
    Identifier,
    IdentityConflict,
    MergePlan,
    NoMerge,
    ProfileState,
)
from tests.unit.identity.factories import at, claim, claimant, email, plan, profile

CONFIG = MergeConfig()


def test_the_earliest_created_profile_wins() -> None:
    decision = plan_merge(
        claim("p3"), [claimant("p3", 9), claimant("p1", 5), claimant("p2", 7)], CONFIG
    )
    assert isinstance(decision, MergePlan)
    assert (decision.winner_id, decision.loser_ids) == ("p1", ("p2", "p3"))
    assert (decision.reason, decision.event_id, decision.decided_at) == (
        "shared_identifier",
        "ev-p3",
        at(60),
    )


def test_ties_on_created_at_are_broken_by_id() -> None:
    decision = plan_merge(claim("b"), [claimant("b", 5), claimant("a", 5)], CONFIG)
    assert isinstance(decision, MergePlan) and decision.winner_id == "a"


def test_the_decision_does_not_depend_on_holder_order() -> None:
    holders = [claimant("p3", 9), claimant("p1", 5), claimant("p2", 5)]
    assert plan_merge(claim(), holders, CONFIG) == plan_merge(claim(), holders[::-1], CONFIG)


def test_one_holder_is_no_merge() -> None:
    decision = plan_merge(claim("p1"), [claimant("p1"), claimant("p1")], CONFIG)
    assert decision == NoMerge(identifier=email(), profile_id="p1")


def test_a_blocked_value_is_a_conflict_with_a_reason() -> None:
    blocked = Identifier(type="email", value="NULL")
    decision = plan_merge(claim(identifier=blocked), [claimant("p1"), claimant("p2")], CONFIG)
    assert isinstance(decision, IdentityConflict)
    assert decision.reason == "blocked_identifier"
    assert "blocked placeholder" in decision.detail
    assert decision.profile_ids == ("p1", "p2")


def test_a_hashed_value_is_not_checked_against_blocked_values() -> None:
    hashed = Identifier(type="email", value="null", hashed=True)
    decision = plan_merge(claim(identifier=hashed), [claimant("p1"), claimant("p2", 1)], CONFIG)
    assert isinstance(decision, MergePlan)


def test_two_different_user_ids_sharing_an_email_is_a_conflict_not_a_merge() -> None:
    holders = [claimant("p1", 0, "u-1"), claimant("p2", 1, "u-2")]
    decision = plan_merge(claim("p2", user_id="u-2"), holders, CONFIG)
    assert isinstance(decision, IdentityConflict)
    assert decision.reason == "user_id_conflict"
    assert "'p1' and 'p2' have different user ids" in decision.detail
    assert decision.id.startswith("c") and decision.event_id == "ev-p2"


def test_the_user_id_guardrail_can_be_switched_off() -> None:
    holders = [claimant("p1", 0, "u-1"), claimant("p2", 1, "u-2")]
    decision = plan_merge(claim("p2"), holders, MergeConfig(allow_user_id_conflict=True))
    assert isinstance(decision, MergePlan)


@pytest.mark.parametrize(
    ("users_a", "users_b"),
    [((), ()), (("u-1",), ()), ((), ("u-2",)), (("u-1", "u-2"), ("u-2",))],
)
def test_profiles_without_disjoint_user_ids_merge(
    users_a: tuple[str, ...], users_b: tuple[str, ...]
) -> None:
    holders = [claimant("p1", 0, *users_a), claimant("p2", 1, *users_b)]
    assert isinstance(plan_merge(claim(), holders, CONFIG), MergePlan)


@pytest.mark.parametrize("reason", ["identify", "alias"])
def test_trusted_identifiers_merge_across_user_ids(reason: str) -> None:
    holders = [claimant("p1", 0, "u-1"), claimant("p2", 1, "u-2")]
    profile_claim = claim("p2", Identifier(type="profile_id", value="p1"), reason=reason)
    decision = plan_merge(profile_claim, holders, CONFIG)
    assert isinstance(decision, MergePlan)
    assert decision.reason == ("alias" if reason == "alias" else "shared_identifier")


def test_a_user_id_claim_merges_with_reason_user_id() -> None:
    user_claim = claim("p2", Identifier(type="user_id", value="u-1"), reason="identify")
    decision = plan_merge(user_claim, [claimant("p1", 0, "u-1"), claimant("p2", 1)], CONFIG)
    assert isinstance(decision, MergePlan) and decision.reason == "user_id"


def test_more_holders_than_the_cap_is_a_conflict() -> None:
    holders = [claimant(f"p{i}", i) for i in range(4)]
    decision = plan_merge(claim(), holders, MergeConfig(max_profiles_per_merge=3))
    assert isinstance(decision, IdentityConflict)
    assert decision.reason == "cap_exceeded"
    assert "held by 4 profiles; at most 3" in decision.detail
    assert isinstance(
        plan_merge(claim(), holders[:3], MergeConfig(max_profiles_per_merge=3)), MergePlan
    )


def test_conflict_ids_are_the_same_on_replay() -> None:
    holders = [claimant("p1", 0, "u-1"), claimant("p2", 1, "u-2")]
    first = plan_merge(claim("p2"), holders, CONFIG)
    again = plan_merge(claim("p2"), holders[::-1], CONFIG)
    assert isinstance(first, IdentityConflict) and first == again


def test_a_claim_describes_a_profile_the_store_does_not_know() -> None:
    described = claimant_from_claim(
        claim("p9", Identifier(type="user_id", value="u-2"), user_id="u-1")
    )
    assert described == claimant("p9", 0, "u-1", "u-2")
    with pytest.raises(InvalidMerge, match="no profile_created_at"):
        claimant_from_claim(claim("p9", created_at=None))


def test_claimant_of_a_profile_collects_its_user_ids() -> None:
    state = profile("p1", 3, user_id="u-1", identifiers=[{"type": "user_id", "value": "u-0"}])
    assert claimant_of(state) == claimant("p1", 3, "u-0", "u-1")


def test_merge_profiles_combines_everything_and_keeps_losing_values_in_history() -> None:
    winner = profile(
        "p1",
        0,
        traits={"name": "Ann", "visits": 2},
        trait_times={"name": at(50)},
        tags=["b", "a"],
        identifiers=[email()],
        user_id="u-1",
        user_id_seen_at=at(1),
    )
    loser = profile(
        "p2",
        5,
        traits={"name": "Annie", "visits": 3, "city": "York"},
        trait_times={"name": at(10)},
        tags=["c", "a"],
        identifiers=[Identifier(type="phone", value="442079460958"), email()],
        user_id="u-2",
        user_id_seen_at=at(20),
    )
    merged = merge_profiles(winner, loser, TraitPolicy(fields={"visits": "sum"}), plan("p1", "p2"))
    assert (merged.id, merged.created_at, merged.merged_into) == ("p1", at(0), None)
    assert merged.traits == {"city": "York", "name": "Ann", "visits": 5}
    assert merged.tags == ("a", "b", "c")
    assert [i.type for i in merged.identifiers] == ["email", "phone"]
    assert (merged.user_id, merged.user_id_seen_at, merged.user_ids) == ("u-2", at(20), ("u-2",))
    [entry] = merged.merge_history
    assert (entry.loser_id, entry.winner_id, entry.merged_at, entry.reason) == (
        "p2",
        "p1",
        at(90),
        "shared_identifier",
    )
    assert entry.dropped == (
        DroppedTrait(field="name", value="Annie", updated_at=at(10), profile_id="p2"),
    )


def test_histories_of_both_sides_are_kept() -> None:
    policy = TraitPolicy()
    ab = merge_profiles(profile("a", 0), profile("b", 1), policy, plan("a", "b"))
    cd = merge_profiles(profile("c", 2), profile("d", 3), policy, plan("c", "d"))
    merged = merge_profiles(ab, cd, policy, plan("a", "c"))
    assert sorted(e.loser_id for e in merged.merge_history) == ["b", "c", "d"]


@pytest.mark.parametrize(
    ("winner", "loser", "problem"),
    [
        (profile("p2", 5), profile("p1", 0), "ranks before"),
        (profile("p1", 0), profile("p1", 0), "into itself"),
        (profile("p1", 0, merged_into="p0"), profile("p2", 5), "already merged"),
        (profile("p1", 0), profile("p2", 5, merged_into="p0"), "already merged"),
    ],
)
def test_merge_profiles_refuses_inputs_that_break_the_rules(
    winner: ProfileState, loser: ProfileState, problem: str
) -> None:
    with pytest.raises(InvalidMerge, match=problem):
        merge_profiles(winner, loser, TraitPolicy(), plan("p1", "p2"))


def test_profiles_merged_through_an_identifier_before_count_towards_the_cap() -> None:
    holders = [claimant("p1", 0), claimant("p9", 9)]
    config = MergeConfig(max_profiles_per_merge=3)
    assert isinstance(plan_merge(claim("p9"), holders, config, merged_through=1), MergePlan)
    decision = plan_merge(claim("p9"), holders, config, merged_through=2)
    assert isinstance(decision, IdentityConflict) and decision.reason == "cap_exceeded"
    assert decision.profile_ids == ("p1", "p9") and "held by 4 profiles" in decision.detail
