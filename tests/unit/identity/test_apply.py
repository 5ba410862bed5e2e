"""apply_merge_plan: roots, staleness, idempotence, the guardrail re-checked."""

from __future__ import annotations

import pytest

from processors.identity import (
    InvalidMerge,
    MergeApplication,
    MergeConfig,
    MergeCycleError,
    TraitPolicy,
    apply_merge_plan,
    audit_id,
    profile_from_claimant,
)
from schemas.identity import IdentityConflict, ProfileState
from tests.unit.identity.factories import T0, at, plan, profile
from tests.unit.identity.world import World

POLICY = TraitPolicy()
CONFIG = MergeConfig()


def _store(*profiles: ProfileState) -> dict[str, ProfileState]:
    return {p.id: p for p in profiles}


def _write(store: dict[str, ProfileState], application: MergeApplication) -> None:
    for state in (application.winner, *application.losers):
        store[state.id] = state


def test_a_plan_merges_its_losers_into_the_winner_with_audits_and_aliases() -> None:
    store = _store(profile("p1", 0), profile("p2", 1), profile("p3", 2))
    application = apply_merge_plan(plan("p1", "p2", "p3"), store, POLICY, CONFIG)
    assert isinstance(application, MergeApplication) and application.changed
    assert application.winner.id == "p1"
    assert [(p.id, p.merged_into) for p in application.losers] == [("p2", "p1"), ("p3", "p1")]
    assert [(a.winner_id, a.loser_id, a.reason, a.event_id) for a in application.audits] == [
        ("p1", "p2", "shared_identifier", "ev-merge"),
        ("p1", "p3", "shared_identifier", "ev-merge"),
    ]
    assert application.audits[0].id == audit_id("p1", "p2")
    assert [(a.alias_id, a.canonical_id) for a in application.aliases] == [
        ("p2", "p1"),
        ("p3", "p1"),
    ]


def test_applying_a_plan_again_changes_nothing() -> None:
    store = _store(profile("p1", 0), profile("p2", 1))
    first = apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)
    assert isinstance(first, MergeApplication)
    _write(store, first)
    again = apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)
    assert isinstance(again, MergeApplication) and not again.changed
    assert again.winner == store["p1"]


def test_a_stale_plan_joins_through_current_roots() -> None:
    # p3 was merged into p0 after the plan (p2 wins over p3) was decided
    store = _store(profile("p0", -5), profile("p2", 1), profile("p3", 2, merged_into="p0"))
    application = apply_merge_plan(plan("p2", "p3"), store, POLICY, CONFIG)
    assert isinstance(application, MergeApplication)
    assert application.winner.id == "p0"
    assert [(p.id, p.merged_into) for p in application.losers] == [("p2", "p0")]


def test_the_planned_winner_is_advisory_the_rank_decides() -> None:
    store = _store(profile("p1", 0), profile("p2", 1))
    application = apply_merge_plan(plan("p2", "p1"), store, POLICY, CONFIG)
    assert isinstance(application, MergeApplication) and application.winner.id == "p1"


def test_user_ids_gained_since_the_decision_turn_the_merge_into_a_conflict() -> None:
    store = _store(profile("p1", 0, user_id="u-1"), profile("p2", 1, user_id="u-2"))
    conflict = apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)
    assert isinstance(conflict, IdentityConflict)
    assert (conflict.reason, conflict.profile_ids) == ("user_id_conflict", ("p1", "p2"))
    assert "by the time the merge" in conflict.detail
    assert isinstance(
        apply_merge_plan(plan("p1", "p2"), store, POLICY, MergeConfig(allow_user_id_conflict=True)),
        MergeApplication,
    )


def test_profiles_the_adapter_did_not_load_are_named() -> None:
    with pytest.raises(InvalidMerge, match="'p2' was not loaded"):
        apply_merge_plan(plan("p1", "p2"), _store(profile("p1", 0)), POLICY, CONFIG)
    store = _store(profile("p1", 0), profile("p2", 1, merged_into="p0"))
    with pytest.raises(InvalidMerge, match="'p0' was not loaded"):
        apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)


def test_a_cycle_in_stored_profiles_is_refused() -> None:
    store = _store(profile("p1", 0, merged_into="p2"), profile("p2", 1, merged_into="p1"))
    with pytest.raises(MergeCycleError):
        apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)


def test_a_claimant_the_store_does_not_know_becomes_a_new_profile() -> None:
    assert profile_from_claimant(plan("p1", "p2"), "p2") == ProfileState(id="p2", created_at=T0)
    with pytest.raises(InvalidMerge, match="not a claimant"):
        profile_from_claimant(plan("p1", "p2"), "p9")


def test_the_audit_says_when_and_through_what() -> None:
    store = _store(profile("p1", 0), profile("p2", 1))
    application = apply_merge_plan(plan("p1", "p2"), store, POLICY, CONFIG)
    assert isinstance(application, MergeApplication)
    [audit] = application.audits
    assert (audit.identifier.key, audit.decided_at) == ("email:ann@example.com", at(90))


@pytest.mark.parametrize(
    "order",
    [
        [("a", "b"), ("b", "c")],
        [("b", "c"), ("a", "b")],
        [("b", "c"), ("a", "b"), ("b", "c"), ("a", "b")],
        [("c", "b"), ("b", "a"), ("a", "c")],
    ],
)
def test_merges_in_any_order_any_number_of_times_end_the_same(order: list[tuple[str, str]]) -> None:
    world = World(
        {
            "a": profile("a", 0, traits={"name": "A", "visits": 1}, tags=["x"]),
            "b": profile("b", 1, traits={"name": "B", "visits": 2}, trait_times={"name": at(9)}),
            "c": profile("c", 2, traits={"visits": 4, "likes": ["tea"]}, tags=["y"]),
        },
        TraitPolicy(fields={"visits": "sum"}),
        CONFIG,
    )
    for first, second in order:
        world.apply(plan(first, second))
    assert {p: world.canonical(p) for p in "abc"} == {"a": "a", "b": "a", "c": "a"}
    assert [world.profiles[p].merged_into for p in "abc"] == [None, "a", "a"]
    root = world.profiles["a"]
    assert root.traits == {"name": "B", "visits": 7, "likes": ["tea"]}
    assert root.tags == ("x", "y")
    assert sorted(e.loser_id for e in root.merge_history) == ["b", "c"]
