"""Wiring the merge stage: claims in, merges and conflicts out to PostgreSQL.

    identity.claims (keyed by identifier) ──> merge ──> PostgreSQL (profiles.merged_into,
                                                        profile_aliases, identifiers,
                                                        merge_audit, identity_conflicts)

Claims of one identifier arrive on one partition, so one writer decides for each
identifier, one claim after the other. For each claim: record it (the claiming profile
holds the identifier), find the canonical profiles holding the identifier, decide
(``plan_merge``: guardrails, deterministic winner) and apply the plan
(``IdentityStore.apply_plan``, the contract of ``processors.identity.apply``). Every step is
idempotent, so a replayed claim changes nothing. PostgreSQL outages are retried with
backoff; a claim that cannot be processed goes to the failed-events topic with the reason.

Most claims change nothing: a profile's first event claims its own id, and an email or user
id usually has one holder. Those are settled in bulk: a run of claims that share no
identifier and no profile is recorded in one transaction and the holders of all its
identifiers are read in one query; every claim up to the first one whose identifier has two
or more canonical holders (or a blocked value) is done, exactly as one at a time would have
decided (``plan_merge`` answers ``NoMerge`` for a single holder, and nothing else in the run
could have changed these holders). That claim takes the full path above, and the claims
after it are read again, since a merge moves holders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from pydantic import ValidationError

from processors.errors import StageError
from processors.identity import IdentityError, MergeConfig, TraitPolicy, is_blocked, plan_merge
from processors.identity_store import IdentityStore
from processors.metrics import WorkerMetrics
from processors.retry import retry_while_retriable
from processors.store_step import Message, failed_event
from schemas import FailedEvent
from schemas.codec import describe_validation_error
from schemas.identity import PROFILE_ID, USER_ID, IdentityClaim, IdentityConflict, MergePlan

__all__ = ["MergeStep"]

STAGE = "merge"
log = logging.getLogger(__name__)


class MergeStep:
    def __init__(
        self,
        store: IdentityStore,
        config: MergeConfig,
        metrics: WorkerMetrics,
        *,
        user_id_hashed: bool,
        retry_cap: float,
        policy: TraitPolicy | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._metrics = metrics
        self._user_id_hashed = user_id_hashed
        self._retry_cap = retry_cap
        self._policy = policy or TraitPolicy()

    async def __call__(self, batch: Sequence[Message]) -> list[FailedEvent]:
        """Process each claim in order; return the claims that failed, with the reason."""
        failures: list[FailedEvent] = []
        claims: list[tuple[Message, IdentityClaim]] = []
        for message in batch:
            try:
                claims.append((message, IdentityClaim.model_validate_json(message.value or b"")))
            except ValidationError as exc:
                reason = "invalid identity claim: " + describe_validation_error(exc)
                failures.append(failed_event(STAGE, message, reason, "invalid_schema", None))
        start = 0
        while start < len(claims):
            run = _independent_run(claims, start)
            try:
                settled = await retry_while_retriable(
                    partial(self._settle, [claim for _, claim in run]),
                    "merge claims",
                    self._retry_cap,
                )
            except StageError:  # something in the run PostgreSQL refuses: one at a time
                settled = 0
            start += settled
            if settled < len(run):
                await self._full(*claims[start], failures)
                start += 1
        return failures

    async def _settle(self, run: Sequence[IdentityClaim]) -> int:
        """Record the run; how many leading claims need nothing more (one holder each)."""
        async with self._store.connection(STAGE) as conn:
            await self._store.record_claims(conn, run, self._user_id_hashed)
            holders = await self._store.holder_counts(conn, run)
        for settled, (claim, count) in enumerate(zip(run, holders, strict=True)):
            identifier = claim.identifier
            blocked = not identifier.hashed and is_blocked(
                identifier.value, self._config.blocked_values
            )
            if blocked or count >= 2:
                return settled
        return len(run)

    async def _full(
        self, message: Message, claim: IdentityClaim, failures: list[FailedEvent]
    ) -> None:
        try:
            await retry_while_retriable(
                partial(self._one, claim),
                "merge claim",
                self._retry_cap,
            )
        except IdentityError as exc:
            failures.append(
                failed_event(STAGE, message, str(exc)[:500], "identity_error", claim.event_id)
            )
        except StageError as exc:  # not retriable: data PostgreSQL refuses
            failures.append(failed_event(STAGE, message, exc.reason, exc.code, claim.event_id))

    async def _one(self, claim: IdentityClaim) -> None:
        async with self._store.connection(STAGE) as conn:
            await self._store.record_claim(conn, claim, self._user_id_hashed)
            async with conn.transaction():
                holders = await self._store.holders(conn, claim)
                merged = await self._store.merged_through(conn, claim.identifier)
            decision = plan_merge(claim, holders, self._config, merged_through=merged)
            if isinstance(decision, IdentityConflict):
                if await self._store.record_conflict(conn, decision):
                    self._metrics.identity_conflicts.labels(decision.reason).inc()
                return
            if not isinstance(decision, MergePlan):
                return
            result = await self._store.apply_plan(conn, decision, self._policy, self._config)
        if isinstance(result, IdentityConflict):
            self._metrics.identity_conflicts.labels(result.reason).inc()
        elif result.changed:
            self._metrics.merges.inc(len(result.losers))
            log.info(
                "merged %s into %s through %s",
                [loser.id for loser in result.losers],
                result.winner.id,
                decision.identifier.type,
            )


_RUN = 500


def _independent_run(
    claims: Sequence[tuple[Message, IdentityClaim]], start: int
) -> Sequence[tuple[Message, IdentityClaim]]:
    """The claims from ``start`` up to the first that shares an identifier (its own or the
    user id it records) or a profile (claiming, or named by a ``profile_id`` identifier)
    with an earlier one of the run: recording one of these cannot change the holders of
    another."""
    seen: set[tuple[str, ...]] = set()
    end = start
    while end < len(claims) and end - start < _RUN:
        keys = _keys(claims[end][1])
        if seen & keys:
            break
        seen |= keys
        end += 1
    return claims[start:end]


def _keys(claim: IdentityClaim) -> set[tuple[str, ...]]:
    identifier = claim.identifier
    keys = {("identifier", identifier.type, identifier.value), ("profile", claim.profile_id)}
    if claim.user_id:
        keys.add(("identifier", USER_ID, claim.user_id))
    if identifier.type == PROFILE_ID:
        keys.add(("profile", identifier.value))
    return keys
