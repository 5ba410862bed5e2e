"""The merge decision for one identifier, and how two profiles become one. Pure; no I/O.

``plan_merge`` sees what one identifier's single writer sees (claims are keyed by
identifier): the claim and the canonical profiles that hold the identifier. It returns

* ``NoMerge`` when they are already one profile;
* ``IdentityConflict`` when a guardrail refuses: a blocked placeholder value
  (``blocked_identifier``); more holders than ``max_profiles_per_merge`` (``cap_exceeded``);
  two holders that each have user ids, none in common, sharing an untrusted identifier such
  as an email or phone (``user_id_conflict``, unless ``allow_user_id_conflict``);
* otherwise a ``MergePlan``: the holders ranked by (created_at, id); the first is the
  winner. The rank is a total order on facts that never change, so every replay and every
  worker picks the same winner.

``merge_profiles`` folds a loser into the winner (traits by ``TraitPolicy``, tags and
identifiers unioned, the latest user id kept, histories joined plus one entry holding the
values that lost). See ``processors.identity.apply`` for applying a plan to stored profiles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from itertools import combinations

from processors.identity.config import MergeConfig
from processors.identity.errors import InvalidMerge
from processors.identity.normalise import is_blocked
from processors.identity.policy import TraitPolicy, merge_traits
from schemas.identity import (
    USER_ID,
    Claimant,
    ConflictReason,
    Identifier,
    IdentityClaim,
    IdentityConflict,
    MergeDecision,
    MergeHistoryEntry,
    MergePlan,
    MergeReason,
    NoMerge,
    ProfileState,
)

__all__ = [
    "claimant_from_claim",
    "claimant_of",
    "identity_conflict",
    "merge_profiles",
    "merge_reason",
    "plan_merge",
    "rank_key",
    "user_id_conflict",
]


def rank_key(profile: Claimant | ProfileState) -> tuple[datetime, str]:
    """Merge rank: the earliest created profile first, ties by id."""
    if isinstance(profile, Claimant):
        return profile.created_at, profile.profile_id
    return profile.created_at, profile.id


def claimant_of(profile: ProfileState) -> Claimant:
    return Claimant(profile_id=profile.id, created_at=profile.created_at, user_ids=profile.user_ids)


def claimant_from_claim(claim: IdentityClaim) -> Claimant:
    """The claiming profile as the claim describes it, for a profile not stored yet."""
    if claim.profile_created_at is None:
        raise InvalidMerge(
            f"claim on {claim.identifier.type} by profile {claim.profile_id!r} (event "
            f"{claim.event_id}) has no profile_created_at; load the profile instead"
        )
    user_ids = {claim.user_id} if claim.user_id else set()
    if claim.identifier.type == USER_ID:
        user_ids.add(claim.identifier.value)
    return Claimant(
        profile_id=claim.profile_id,
        created_at=claim.profile_created_at,
        user_ids=tuple(sorted(user_ids)),
    )


def merge_reason(claim: IdentityClaim) -> MergeReason:
    if claim.reason == "alias":
        return "alias"
    return "user_id" if claim.identifier.type == USER_ID else "shared_identifier"


def user_id_conflict(holders: Sequence[Claimant]) -> tuple[str, str] | None:
    """Two holders that both have user ids and none in common, if any (first by rank)."""
    ranked = sorted(holders, key=rank_key)
    for a, b in combinations(ranked, 2):
        if a.user_ids and b.user_ids and not set(a.user_ids) & set(b.user_ids):
            return a.profile_id, b.profile_id
    return None


def identity_conflict(
    claim: IdentityClaim | MergePlan,
    profile_ids: Sequence[str],
    reason: ConflictReason,
    detail: str,
) -> IdentityConflict:
    ids = tuple(sorted(set(profile_ids)))
    seed = "\x00".join((reason, claim.identifier.key, *ids)).encode()
    at = claim.claimed_at if isinstance(claim, IdentityClaim) else claim.decided_at
    return IdentityConflict(
        id="c" + hashlib.sha256(seed).hexdigest()[:32],
        identifier=claim.identifier,
        profile_ids=ids,
        reason=reason,
        detail=detail,
        event_id=claim.event_id,
        detected_at=at,
    )


def plan_merge(
    claim: IdentityClaim,
    holders: Sequence[Claimant],
    config: MergeConfig,
    *,
    merged_through: int = 0,
) -> MergeDecision:
    """Decide for ``claim.identifier``. ``holders``: the canonical profiles holding it,
    including the claimant's (``claimant_from_claim`` when the store does not know it).
    ``merged_through``: how many profiles were merged away through this identifier before.
    They count towards ``max_profiles_per_merge``: merging one claim at a time, a shared
    value (a support address) would otherwise glue any number of profiles together."""
    identifier = claim.identifier
    unique = _unique(holders)
    ids = [holder.profile_id for holder in unique]
    if not identifier.hashed and is_blocked(identifier.value, config.blocked_values):
        detail = f"{identifier.type} value {identifier.value!r} is a blocked placeholder"
        return identity_conflict(claim, ids or [claim.profile_id], "blocked_identifier", detail)
    if len(unique) < 2:
        return NoMerge(identifier=identifier, profile_id=ids[0] if ids else claim.profile_id)
    held_by = len(unique) + merged_through
    if held_by > config.max_profiles_per_merge:
        detail = (
            f"{identifier.type} is held by {held_by} profiles; at most "
            f"{config.max_profiles_per_merge} may be merged through one identifier"
        )
        return identity_conflict(claim, ids, "cap_exceeded", detail)
    refusal = _user_id_refusal(identifier, unique, config)
    if refusal is not None:
        return identity_conflict(claim, ids, "user_id_conflict", refusal)
    ranked = sorted(unique, key=rank_key)
    return MergePlan(
        identifier=identifier,
        winner_id=ranked[0].profile_id,
        loser_ids=tuple(holder.profile_id for holder in ranked[1:]),
        claimants=tuple(ranked),
        reason=merge_reason(claim),
        event_id=claim.event_id,
        decided_at=claim.claimed_at,
    )


def merge_profiles(
    winner: ProfileState, loser: ProfileState, policy: TraitPolicy, plan: MergePlan
) -> ProfileState:
    """``winner`` with ``loser`` folded in; ``plan`` says why (for the history entry)."""
    _check_pair(winner, loser)
    traits = merge_traits(winner, loser, policy)
    user_id, seen_at = _latest_user_id(winner, loser)
    entry = MergeHistoryEntry(
        loser_id=loser.id,
        winner_id=winner.id,
        identifier=plan.identifier,
        reason=plan.reason,
        event_id=plan.event_id,
        merged_at=plan.decided_at,
        dropped=traits.dropped,
    )
    history = sorted(
        (*winner.merge_history, *loser.merge_history, entry),
        key=lambda item: (item.merged_at, item.loser_id),
    )
    return winner.model_copy(
        update={
            "traits": traits.traits,
            "trait_times": traits.trait_times,
            "tags": tuple(sorted({*winner.tags, *loser.tags})),
            "identifiers": _identifiers(winner.identifiers, loser.identifiers),
            "user_id": user_id,
            "user_id_seen_at": seen_at,
            "merge_history": tuple(history),
        }
    )


def _unique(holders: Sequence[Claimant]) -> list[Claimant]:
    by_id: dict[str, Claimant] = {}
    for holder in holders:
        known = by_id.get(holder.profile_id)
        if known is None:
            by_id[holder.profile_id] = holder
            continue
        by_id[holder.profile_id] = known.model_copy(
            update={
                "created_at": min(known.created_at, holder.created_at),
                "user_ids": tuple(sorted({*known.user_ids, *holder.user_ids})),
            }
        )
    return list(by_id.values())


def _user_id_refusal(
    identifier: Identifier, holders: Sequence[Claimant], config: MergeConfig
) -> str | None:
    if identifier.type in config.trusted_types or config.allow_user_id_conflict:
        return None
    pair = user_id_conflict(holders)
    if pair is None:
        return None
    return (
        f"profiles {pair[0]!r} and {pair[1]!r} have different user ids; a shared "
        f"{identifier.type} does not merge them (allow_user_id_conflict)"
    )


def _check_pair(winner: ProfileState, loser: ProfileState) -> None:
    for profile in (winner, loser):
        if profile.merged_into is not None:
            raise InvalidMerge(
                f"profile {profile.id!r} is already merged into {profile.merged_into!r}; "
                "merge canonical profiles only"
            )
    if winner.id == loser.id:
        raise InvalidMerge(f"profile {winner.id!r} cannot be merged into itself")
    if rank_key(loser) < rank_key(winner):
        raise InvalidMerge(
            f"profile {loser.id!r} (created {loser.created_at.isoformat()}) ranks before "
            f"{winner.id!r} (created {winner.created_at.isoformat()}) and must win"
        )


def _latest_user_id(a: ProfileState, b: ProfileState) -> tuple[str | None, datetime | None]:
    candidates = [
        (profile.user_id_seen_at or profile.created_at, profile.user_id)
        for profile in (a, b)
        if profile.user_id is not None
    ]
    if not candidates:
        return None, None
    seen_at, user_id = max(candidates)
    return user_id, seen_at


def _identifiers(a: tuple[Identifier, ...], b: tuple[Identifier, ...]) -> tuple[Identifier, ...]:
    return tuple(sorted({*a, *b}, key=lambda i: (i.type, i.value, i.hashed)))
