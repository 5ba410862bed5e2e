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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from processors.errors import StageError
from processors.identity import IdentityError, MergeConfig, TraitPolicy, plan_merge
from processors.identity_store import IdentityStore
from processors.metrics import WorkerMetrics
from processors.retry import retry_while_retriable
from processors.store_step import Message, failed_event
from schemas import FailedEvent
from schemas.codec import describe_validation_error
from schemas.identity import IdentityClaim, IdentityConflict, MergePlan

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
        for message in batch:
            try:
                claim = IdentityClaim.model_validate_json(message.value or b"")
            except ValidationError as exc:
                reason = "invalid identity claim: " + describe_validation_error(exc)
                failures.append(failed_event(STAGE, message, reason, "invalid_schema", None))
                continue
            try:
                await retry_while_retriable(
                    lambda claim=claim: self._one(claim),  # type: ignore[misc]
                    "merge claim",
                    self._retry_cap,
                )
            except IdentityError as exc:
                failures.append(
                    failed_event(STAGE, message, str(exc)[:500], "identity_error", claim.event_id)
                )
            except StageError as exc:  # not retriable: data PostgreSQL refuses
                failures.append(failed_event(STAGE, message, exc.reason, exc.code, claim.event_id))
        return failures

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
