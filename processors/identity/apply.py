"""Applying a ``MergePlan`` to the profiles as they are now. Pure; the adapter does the I/O.

``apply_merge_plan`` re-resolves every profile of the plan to its current canonical profile
(following ``merged_into``), unites those roots under the best-ranked one (earliest created,
ties by id) and folds the others into it in rank order. Because it works on roots only:

* a stale plan is still right (a profile merged elsewhere since the decision joins through
  its root), and applying a plan twice, or plans in any order, gives the same canonical
  mapping and the same traits (union-find with a fixed rank; see ``policy`` for traits);
* no cycle can form: a root is only ever pointed at another root;
* the user-id guardrail is checked again on the roots, since a merge through another
  identifier may have given a root a user id after the decision.

How the adapter applies a plan to PostgreSQL (race-free, deadlock-free):

1. ``BEGIN`` (READ COMMITTED). Make sure a row exists for each of ``plan.claimants``
   (``INSERT INTO profiles ... ON CONFLICT (id) DO NOTHING`` with the claimant's
   ``created_at``, which is write-once: never updated afterwards).
2. Read ``id, merged_into`` of the plan's profiles without locks; the roots are
   ``coalesce(merged_into, id)`` (one step: ``merged_into`` always names a root, see 6).
3. Lock the plan's profiles and their roots in ONE statement, in id order:
   ``SELECT ... FROM profiles WHERE id = ANY($ids) ORDER BY id FOR UPDATE``. Every writer
   of profile rows locks this way, so no two transactions wait on each other in a cycle.
4. Re-resolve with the locked rows. If a root has been merged since step 2 (its
   ``merged_into`` is now set), ``ROLLBACK`` and start again at 2: never lock more rows
   while holding some. Give up after a few rounds with a retriable error.
5. Load ``ProfileState`` for the locked rows (traits, trait times, tags, identifiers from
   ``identifiers`` rows of the profile and its aliases, user id, history) and call
   ``apply_merge_plan``. On ``IdentityConflict``: insert it into ``identity_conflicts``
   (``ON CONFLICT (id) DO NOTHING``), ``COMMIT``.
6. Otherwise write ``application.winner`` to the winner's row (also ``event_count`` summed
   and ``last_event_at`` maximised over the losers); set ``merged_into = winner`` on each
   loser; compress paths: ``UPDATE profiles SET merged_into = $winner WHERE merged_into =
   ANY($losers) RETURNING id``; upsert ``profile_aliases (alias_id, canonical_id)`` for the
   losers and the returned ids; insert ``application.audits`` into ``merge_audit``
   (``ON CONFLICT (loser_id) DO NOTHING``: a profile is merged once); ``COMMIT``.
7. After the commit, commit the consumer offset. A crash in between replays the plan:
   step 4 finds everything merged and the plan is a no-op. (trackflow's identify stage
   reads ``merged_into`` from PostgreSQL per batch, so a merge needs no alias topic; a
   deployment that keeps aliases in memory elsewhere would publish a ``ProfileAlias`` per
   loser and re-pointed id here, keyed by alias id.)

Other writers of profile rows follow the same two rules, or a merge can deadlock with them
(PostgreSQL would abort one with 40P01) or write to a profile merged away a moment ago:

* lock (or upsert) many rows in id order: the store's batched upsert feeds its
  ``INSERT ... ON CONFLICT DO UPDATE`` from a ``SELECT ... ORDER BY id``;
* write to canonical rows only: map ids through ``coalesce(merged_into, id)`` first, add
  ``WHERE p.merged_into IS NULL`` to the ``DO UPDATE`` and ``RETURNING id``; ids missing
  from the result were merged meanwhile: map them again and retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from processors.identity.config import MergeConfig
from processors.identity.errors import InvalidMerge
from processors.identity.merge import (
    claimant_of,
    identity_conflict,
    merge_profiles,
    rank_key,
    user_id_conflict,
)
from processors.identity.policy import TraitPolicy
from processors.identity.resolve import resolve
from schemas.identity import (
    IdentityConflict,
    MergeAudit,
    MergePlan,
    ProfileAlias,
    ProfileState,
)

__all__ = ["MergeApplication", "apply_merge_plan", "audit_id", "profile_from_claimant"]


@dataclass(frozen=True)
class MergeApplication:
    """What to write: the winner's new state, the losers (``merged_into`` set), one audit
    record and one alias per loser. No losers: the plan had already been applied."""

    winner: ProfileState
    losers: tuple[ProfileState, ...]
    audits: tuple[MergeAudit, ...]
    aliases: tuple[ProfileAlias, ...]

    @property
    def changed(self) -> bool:
        return bool(self.losers)


def audit_id(winner_id: str, loser_id: str) -> str:
    return "m" + hashlib.sha256(f"{winner_id}\x00{loser_id}".encode()).hexdigest()[:32]


def profile_from_claimant(plan: MergePlan, profile_id: str) -> ProfileState:
    """A new profile row for a claimant the store does not know yet."""
    for claimant in plan.claimants:
        if claimant.profile_id == profile_id:
            return ProfileState(id=profile_id, created_at=claimant.created_at)
    raise InvalidMerge(f"profile {profile_id!r} is not a claimant of the plan")


def apply_merge_plan(
    plan: MergePlan,
    profiles: Mapping[str, ProfileState],
    policy: TraitPolicy,
    config: MergeConfig,
) -> MergeApplication | IdentityConflict:
    """``profiles``: the plan's profiles and their canonical roots, by id, as stored now."""
    aliases = {p.id: p.merged_into for p in profiles.values() if p.merged_into is not None}
    roots = sorted(
        {_root(profile_id, aliases, profiles) for profile_id in plan.profile_ids},
        key=lambda root: rank_key(profiles[root]),
    )
    winner = profiles[roots[0]]
    if len(roots) == 1:
        return MergeApplication(winner, (), (), ())
    checked = plan.identifier.type in config.trusted_types or config.allow_user_id_conflict
    pair = None if checked else user_id_conflict([claimant_of(profiles[r]) for r in roots])
    if pair is not None:
        detail = (
            f"profiles {pair[0]!r} and {pair[1]!r} have different user ids by the time the "
            f"merge through {plan.identifier.type} was applied"
        )
        return identity_conflict(plan, roots, "user_id_conflict", detail)
    merged = winner
    for loser_id in roots[1:]:
        merged = merge_profiles(merged, profiles[loser_id], policy, plan)
    losers = tuple(profiles[r].model_copy(update={"merged_into": winner.id}) for r in roots[1:])
    return MergeApplication(
        winner=merged,
        losers=losers,
        audits=tuple(_audit(plan, winner.id, loser.id) for loser in losers),
        aliases=tuple(
            ProfileAlias(alias_id=loser.id, canonical_id=winner.id, merged_at=plan.decided_at)
            for loser in losers
        ),
    )


def _root(profile_id: str, aliases: Mapping[str, str], profiles: Mapping[str, ProfileState]) -> str:
    root = resolve(profile_id, aliases)
    for needed in (profile_id, root):
        if needed not in profiles:
            raise InvalidMerge(
                f"profile {needed!r} was not loaded; apply_merge_plan needs every profile of "
                f"the plan and its canonical profile (plan profile {profile_id!r})"
            )
    return root


def _audit(plan: MergePlan, winner_id: str, loser_id: str) -> MergeAudit:
    return MergeAudit(
        id=audit_id(winner_id, loser_id),
        winner_id=winner_id,
        loser_id=loser_id,
        identifier=plan.identifier,
        reason=plan.reason,
        event_id=plan.event_id,
        decided_at=plan.decided_at,
    )
