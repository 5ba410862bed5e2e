"""An in-memory stand-in for the merge stage's adapter: what PostgreSQL would hold, and the
steps the adapter takes (record a claim, decide, apply a plan), for the property tests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from processors.identity import (
    MergeApplication,
    MergeConfig,
    TraitPolicy,
    apply_merge_plan,
    claimant_of,
    plan_merge,
    resolve,
)
from schemas.identity import (
    PROFILE_ID,
    IdentityClaim,
    IdentityConflict,
    MergePlan,
    ProfileState,
)


@dataclass
class World:
    profiles: dict[str, ProfileState]
    policy: TraitPolicy
    config: MergeConfig
    holders: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    conflicts: list[IdentityConflict] = field(default_factory=list)

    def aliases(self) -> dict[str, str]:
        return {p.id: p.merged_into for p in self.profiles.values() if p.merged_into}

    def canonical(self, profile_id: str) -> str:
        return resolve(profile_id, self.aliases())

    def record(self, claim: IdentityClaim) -> None:
        """The claim's identifier row; the profile (and its group) now holds it."""
        self.holders[claim.key].add(claim.profile_id)
        root = self.profiles[self.canonical(claim.profile_id)]
        if claim.identifier not in root.identifiers:
            identifiers = (*root.identifiers, claim.identifier)
            self.profiles[root.id] = root.model_copy(update={"identifiers": identifiers})

    def decide(self, claim: IdentityClaim) -> MergePlan | None:
        held = set(self.holders[claim.key])
        if claim.identifier.type == PROFILE_ID and claim.identifier.value in self.profiles:
            held.add(claim.identifier.value)  # the named profile holds its own id
        roots = {self.canonical(profile_id) for profile_id in held}
        claimants = [claimant_of(self.profiles[root]) for root in sorted(roots)]
        decision = plan_merge(claim, claimants, self.config)
        if isinstance(decision, IdentityConflict):
            self.conflicts.append(decision)
        return decision if isinstance(decision, MergePlan) else None

    def apply(self, plan: MergePlan) -> None:
        """One transaction: apply on the current rows, write, compress paths."""
        result = apply_merge_plan(plan, self.profiles, self.policy, self.config)
        if isinstance(result, IdentityConflict):
            self.conflicts.append(result)
            return
        self._write(result)

    def _write(self, result: MergeApplication) -> None:
        for state in (result.winner, *result.losers):
            self.profiles[state.id] = state
        losers = {loser.id for loser in result.losers}
        for profile in list(self.profiles.values()):
            if profile.merged_into in losers:
                self.profiles[profile.id] = profile.model_copy(
                    update={"merged_into": result.winner.id}
                )
