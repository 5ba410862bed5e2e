"""Property-based tests: random claims over random profiles, decided and applied in random
interleavings (stale plans, re-deliveries, replays), always end in the same place.

The schedule models the real system: the merge agent records a claim and decides on the
state it sees; the plan is applied later, possibly after other plans, possibly twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from processors.identity import MergeConfig, TraitPolicy, rank_key
from schemas.identity import (
    PROFILE_ID,
    USER_ID,
    Identifier,
    IdentityClaim,
    MergePlan,
    ProfileState,
)
from tests.unit.identity.factories import at
from tests.unit.identity.world import World

POLICY = TraitPolicy(fields={"name": "latest", "score": "latest", "visits": "sum"})
LATEST_FIELDS = ("name", "score")  # "segments" (lists) is left to the default "auto" -> union
TIMES = st.integers(0, 4).map(at)  # few distinct instants: ties on purpose

IDENTIFIERS = [Identifier(type="email", value=f"e{i}@x.io") for i in range(4)] + [
    Identifier(type="phone", value="4420794609"),
]


@st.composite
def profiles(draw: st.DrawFn, user_ids: Sequence[str | None]) -> dict[str, ProfileState]:
    count = draw(st.integers(2, 6))
    states = {}
    for i in range(count):
        traits: dict[str, Any] = {}
        times: dict[str, datetime] = {}
        for name, values in (
            ("name", st.sampled_from(["Ann", "Bob", "Cy"])),
            ("score", st.integers(0, 3)),
            ("visits", st.integers(0, 5)),
            ("segments", st.lists(st.sampled_from(["vip", "new", "eu"]), max_size=2)),
        ):
            if draw(st.booleans()):
                traits[name] = draw(values)
                if draw(st.booleans()):
                    times[name] = draw(TIMES)
        user_id = draw(st.sampled_from(user_ids))
        states[f"p{i}"] = ProfileState(
            id=f"p{i}",
            created_at=draw(TIMES),
            traits=traits,
            trait_times=times,
            tags=tuple(sorted(draw(st.frozensets(st.sampled_from("abc"))))),
            user_id=user_id,
            user_id_seen_at=draw(st.none() | TIMES) if user_id else None,
        )
    return states


@st.composite
def claims(
    draw: st.DrawFn,
    states: dict[str, ProfileState],
    extra: Sequence[Identifier],
    aliases: bool = True,
) -> list[IdentityClaim]:
    ids = sorted(states)
    named = [Identifier(type=PROFILE_ID, value=p) for p in ids] if aliases else []
    choices = [*IDENTIFIERS, *extra, *named]
    identifiers = st.sampled_from(IDENTIFIERS[:2]) | st.sampled_from(choices)  # shared often
    drawn = draw(st.lists(st.tuples(st.sampled_from(ids), identifiers), min_size=3, max_size=20))
    result = []
    for n, (profile_id, identifier) in enumerate(drawn):
        own = states[profile_id].user_id
        if identifier.type == USER_ID:  # a profile only claims its own user id
            if own is None:
                continue
            identifier = Identifier(type=USER_ID, value=own)
        result.append(
            IdentityClaim(
                identifier=identifier,
                profile_id=profile_id,
                event_id=f"ev{n}",
                event_type="identify",
                claimed_at=at(10 + n),
                reason="alias" if identifier.type == PROFILE_ID else "observed",
                user_id=own,
                profile_created_at=states[profile_id].created_at,
            )
        )
    return result


def run(world: World, ordered: Sequence[IdentityClaim], data: st.DataObject) -> None:
    """Decide claims in order; apply plans late, in any order, some twice."""
    queue = list(ordered)
    pending: list[tuple[MergePlan, bool]] = []
    while queue or pending:
        if queue and (not pending or data.draw(st.booleans(), label="decide next")):
            claim = queue.pop(0)
            world.record(claim)
            plan = world.decide(claim)
            if plan is not None:
                pending.append((plan, data.draw(st.booleans(), label="redelivered")))
        else:
            plan, again = pending.pop(data.draw(st.integers(0, len(pending) - 1), label="apply"))
            world.apply(plan)
            if again:
                pending.append((plan, False))


def replay(world: World, ordered: Iterable[IdentityClaim]) -> None:
    for claim in ordered:
        world.record(claim)
        plan = world.decide(claim)
        if plan is not None:
            world.apply(plan)


def groups(states: dict[str, ProfileState], claimed: Sequence[IdentityClaim]) -> list[set[str]]:
    """Connected components of the claim graph (independent union-find)."""
    parent = {p: p for p in states}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    by_key: dict[str, set[str]] = defaultdict(set)
    for claim in claimed:
        by_key[claim.key].add(claim.profile_id)
        if claim.identifier.type == PROFILE_ID:
            by_key[claim.key].add(claim.identifier.value)
    for members in by_key.values():
        first, *rest = sorted(members)
        for other in rest:
            parent[find(other)] = find(first)
    found: dict[str, set[str]] = defaultdict(set)
    for p in states:
        found[find(p)].add(p)
    return list(found.values())


def _json(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def expected_state(
    members: Iterable[ProfileState], claimed: Sequence[IdentityClaim]
) -> dict[str, object]:
    members = list(members)
    ids = {m.id for m in members}
    traits: dict[str, JsonValue] = {}
    times: dict[str, datetime] = {}
    for name in {n for m in members for n in m.traits}:
        sides = [(m.trait_time(name), m.traits[name]) for m in members if name in m.traits]
        times[name] = max(t for t, _ in sides)
        if len(sides) == 1:  # nothing to combine: kept as it was
            traits[name] = sides[0][1]
        elif name in LATEST_FIELDS:
            traits[name] = max(sides, key=lambda side: (side[0], _json(side[1])))[1]
        elif name == "visits":
            traits[name] = sum(int(str(v)) for _, v in sides)
        else:
            union = {_json(item): item for _, v in sides if isinstance(v, list) for item in v}
            traits[name] = [union[text] for text in sorted(union)]
    with_user = [(m.user_id_seen_at or m.created_at, m.user_id) for m in members if m.user_id]
    return {
        "traits": traits,
        "times": times,
        "tags": sorted({t for m in members for t in m.tags}),
        "identifiers": sorted({c.key for c in claimed if c.profile_id in ids}),
        "user_id": max(with_user)[1] if with_user else None,
    }


def observed_state(state: ProfileState) -> dict[str, object]:
    return {
        "traits": state.traits,
        "times": {name: state.trait_time(name) for name in state.traits},
        "tags": sorted(state.tags),
        "identifiers": sorted(i.key for i in state.identifiers),
        "user_id": state.user_id,
    }


def outcome(world: World) -> dict[str, object]:
    roots = {world.canonical(p) for p in world.profiles}
    return {
        "canonical": {p: world.canonical(p) for p in world.profiles},
        "roots": {r: observed_state(world.profiles[r]) for r in roots},
    }


def assert_no_cycles_and_compressed(world: World) -> None:
    for state in world.profiles.values():
        world.canonical(state.id)  # raises MergeCycleError on a loop
        if state.merged_into is not None:
            assert state.merged_into != state.id
            assert world.profiles[state.merged_into].merged_into is None


SAME_USER = [None, "u"]  # one user id at most: no guardrail fires, so order cannot matter


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_interleaving_and_replay_gives_the_same_groups_winners_and_traits(
    data: st.DataObject,
) -> None:
    states = data.draw(profiles(SAME_USER), label="profiles")
    claimed = data.draw(claims(states, [Identifier(type=USER_ID, value="u")]), label="claims")
    config = MergeConfig(max_profiles_per_merge=100)
    outcomes = []
    for attempt in range(2):
        world = World(dict(states), POLICY, config)
        run(world, data.draw(st.permutations(claimed), label=f"order {attempt}"), data)
        assert world.conflicts == []
        assert_no_cycles_and_compressed(world)
        before = outcome(world)
        replay(world, data.draw(st.permutations(claimed), label=f"replay {attempt}"))
        assert outcome(world) == before  # replaying every claim changes nothing
        outcomes.append(before)
    assert outcomes[0] == outcomes[1]

    canonical = outcomes[0]["canonical"]
    roots = outcomes[0]["roots"]
    assert isinstance(canonical, dict) and isinstance(roots, dict)
    event(f"largest group: {max(len(g) for g in groups(states, claimed))}")
    for group in groups(states, claimed):
        winner = min((states[p] for p in group), key=rank_key).id
        assert {canonical[p] for p in group} == {winner}
        assert roots[winner] == expected_state((states[p] for p in group), claimed)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_guardrails_hold_under_any_interleaving(data: st.DataObject) -> None:
    states = data.draw(profiles([None, "u1", "u2"]), label="profiles")
    extra = [Identifier(type=USER_ID, value="own"), Identifier(type="email", value="null")]
    # no explicit aliases here: an alias merges across user ids on purpose
    claimed = data.draw(claims(states, extra, aliases=False), label="claims")
    world = World(dict(states), POLICY, MergeConfig(max_profiles_per_merge=3))
    run(world, data.draw(st.permutations(claimed), label="order"), data)

    assert_no_cycles_and_compressed(world)
    components = groups(states, claimed)
    merged: dict[str, set[str]] = defaultdict(set)
    for p in states:
        merged[world.canonical(p)].add(p)
    for root, members in merged.items():
        assert root == min((states[p] for p in members), key=rank_key).id
        assert any(members <= component for component in components)  # no spurious merges
        assert len(world.profiles[root].user_ids) <= 1  # never two user ids in one profile
    event(f"conflicts: {sorted({c.reason for c in world.conflicts})}")
    for conflict in world.conflicts:
        assert conflict.reason in ("blocked_identifier", "user_id_conflict", "cap_exceeded")
        assert conflict.detail
    blocked = [c for c in world.conflicts if c.reason == "blocked_identifier"]
    assert bool(blocked) == any(c.identifier.value == "null" for c in claimed)
