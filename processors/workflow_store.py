"""PostgreSQL adapter for the workflow stage and the webhook deliverer (psycopg 3).

One transaction per batch of the workflow stage (:meth:`WorkflowStore.transaction`):

1. make sure a ``profiles`` row exists for each profile of the batch, map each id to its
   canonical profile (``coalesce(merged_into, id)``), then lock the canonical rows in ONE
   statement in id order (``SELECT ... ORDER BY id FOR UPDATE``), as every writer of profile
   rows does (see ``processors.identity.apply``); a row merged between the read and the lock
   restarts the transaction. Evaluation reads the locked rows, so each event sees the
   effects of the actions of the profile's earlier events;
2. skip the events that already have a ``workflow_runs`` row (a replay);
3. write the new tags and traits (:meth:`WorkflowTransaction.write_profiles`, the one place
   that writes profile rows), the runs and the pending webhook deliveries; then (the caller
   has had Kafka acknowledge what the batch produced) the action outcomes, and commit.

Rules are mirrored from the config topic into ``rules``; the deliverer records each attempt
in ``webhook_deliveries``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from processors.errors import StoreUnavailable
from processors.pg import Database
from schemas.rules import ActionOutcome, RuleRecord, WebhookCall

__all__ = ["OutcomeRow", "RunRow", "WorkflowStore", "WorkflowTransaction"]

PROFILE_FIELDS = (
    "id, created_at, last_event_at, event_count, traits, tags, geo, device, merged_into"
)


@dataclass(frozen=True)
class RunRow:
    event_id: str
    profile_id: str
    matched_rules: tuple[str, ...]
    stopped_by: str | None
    partition: int
    offset: int


@dataclass(frozen=True)
class OutcomeRow:
    event_id: str
    outcome: ActionOutcome
    status: str  # applied, emitted, queued, produced, failed, stopped
    error: str | None


class WorkflowTransaction:
    """The workflow stage's view of PostgreSQL inside one transaction."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def lock_profiles(
        self, first_seen: Mapping[str, datetime]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Create the missing rows and lock the canonical ones in id order: (canonical id ->
        row, profile id -> canonical id). StoreUnavailable (retriable) when a locked row was
        merged meanwhile: the caller starts the transaction again."""
        ids = sorted(first_seen)
        async with self._conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO profiles (id, created_at, last_event_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [(pid, first_seen[pid], first_seen[pid]) for pid in ids],
            )
            await cur.execute(
                "SELECT id, coalesce(merged_into, id) FROM profiles WHERE id = ANY(%s)", (ids,)
            )
            canonical = {pid: root for pid, root in await cur.fetchall()}
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {PROFILE_FIELDS} FROM profiles WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                (sorted(set(canonical.values())),),
            )
            rows = {row["id"]: row for row in await cur.fetchall()}
        moved = sorted(pid for pid, row in rows.items() if row["merged_into"] is not None)
        if moved:
            raise StoreUnavailable("workflow", f"profiles {moved} were merged meanwhile; again")
        return rows, canonical

    async def done_events(self, event_ids: Sequence[str]) -> set[str]:
        cur = await self._conn.execute(
            "SELECT event_id FROM workflow_runs WHERE event_id = ANY(%s)", (list(event_ids),)
        )
        return {row[0] for row in await cur.fetchall()}

    async def read_sessions(self, session_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT id, profile_id, started_at, last_seen_at, event_count, geo, device"
                " FROM sessions WHERE id = ANY(%s)",
                (list(session_ids),),
            )
            return {row["id"]: row for row in await cur.fetchall()}

    async def write_profiles(
        self,
        profiles: Mapping[str, Mapping[str, Any]],
        trait_times: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Write tags and traits of the locked canonical rows, in id order; ``trait_times``
        says when each changed (top-level) trait was set, for the store's and merge's
        newer-wins rule. The workflow stage writes profile rows here and nowhere else."""
        params = [
            (
                list(profiles[pid]["tags"]),
                Jsonb(profiles[pid]["traits"]),
                Jsonb(trait_times.get(pid, {})),
                pid,
            )
            for pid in sorted(profiles)
        ]
        async with self._conn.cursor() as cur:
            await cur.executemany(
                "UPDATE profiles SET tags = %s, traits = %s, trait_times = trait_times || %s,"
                " updated_at = now() WHERE id = %s AND merged_into IS NULL",
                params,
            )

    async def record_runs(self, runs: Sequence[RunRow], calls: Sequence[WebhookCall]) -> None:
        """The runs (the replay guard) and the pending webhook deliveries."""
        async with self._conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO workflow_runs (event_id, profile_id, matched_rules, stopped_by,"
                " kafka_partition, kafka_offset) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (event_id) DO NOTHING",
                [_run_params(r) for r in runs],
            )
            await cur.executemany(
                "INSERT INTO webhook_deliveries (idempotency_key, event_id, rule_id,"
                " action_index, method, url, status, max_attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                [_call_params(c) for c in calls],
            )

    async def record_outcomes(self, outcomes: Sequence[OutcomeRow]) -> None:
        async with self._conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO action_outcomes (event_id, rule_id, action_index, action, status,"
                " error, idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (event_id, rule_id, action_index) DO NOTHING",
                [_outcome_params(o) for o in outcomes],
            )


def _run_params(r: RunRow) -> tuple[object, ...]:
    return (r.event_id, r.profile_id, list(r.matched_rules), r.stopped_by, r.partition, r.offset)


def _outcome_params(o: OutcomeRow) -> tuple[object, ...]:
    a = o.outcome
    return (o.event_id, a.rule_id, a.action_index, a.action, o.status, o.error, a.idempotency_key)


def _call_params(c: WebhookCall) -> tuple[object, ...]:
    key, max_attempts = c.idempotency_key, c.max_attempts
    return (key, c.event_id, c.rule_id, c.action_index, c.method, c.url, max_attempts)


def _rule_params(r: RuleRecord) -> tuple[object, ...]:
    rule = r.rule
    definition = Jsonb(rule.model_dump(mode="json"))
    return (rule.id, rule.name, rule.enabled, rule.priority, definition, r.updated_at)


_UPSERT_RULE = """
INSERT INTO rules AS r (id, name, enabled, priority, definition, updated_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, enabled = EXCLUDED.enabled, priority = EXCLUDED.priority,
    definition = EXCLUDED.definition, updated_at = EXCLUDED.updated_at
WHERE r.updated_at <= EXCLUDED.updated_at
"""

# An attempt's result; a late or replayed result never undoes a delivery or a later attempt.
_RECORD_ATTEMPT = """
INSERT INTO webhook_deliveries AS d (idempotency_key, event_id, rule_id, action_index, method,
    url, status, attempts, max_attempts, last_status_code, last_error, delivered_at)
VALUES (%(key)s, %(event_id)s, %(rule_id)s, %(action_index)s, %(method)s, %(url)s,
    %(status)s, %(attempt)s, %(max_attempts)s, %(code)s, %(error)s,
    CASE WHEN %(status)s = 'delivered' THEN now() END)
ON CONFLICT (idempotency_key) DO UPDATE SET
    status = EXCLUDED.status, attempts = EXCLUDED.attempts,
    last_status_code = EXCLUDED.last_status_code, last_error = EXCLUDED.last_error,
    delivered_at = EXCLUDED.delivered_at, updated_at = now()
WHERE d.status <> 'delivered' AND d.attempts <= EXCLUDED.attempts
"""


class WorkflowStore:
    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        self._db = Database(dsn, max_size=max_connections)

    async def start(self) -> None:
        await self._db.start()

    async def stop(self) -> None:
        await self._db.stop()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WorkflowTransaction]:
        """One transaction; an unreachable database raises the retriable StoreUnavailable,
        a refused write (a value PostgreSQL cannot store) InvalidEvent."""
        async with self._db.transaction("workflow") as conn:
            yield WorkflowTransaction(conn)

    async def write_rules(self, records: Sequence[RuleRecord]) -> None:
        """Mirror rules from the config topic; an older record never overwrites a newer."""
        await self._executemany(_UPSERT_RULE, [_rule_params(r) for r in records])

    async def delivered(self, idempotency_key: str) -> bool:
        """Whether a call was delivered already (a replayed request is not sent again)."""
        async with self._db.connection("webhooks") as conn:
            cur = await conn.execute(
                "SELECT 1 FROM webhook_deliveries"
                " WHERE idempotency_key = %s AND status = 'delivered'",
                (idempotency_key,),
            )
            return await cur.fetchone() is not None

    async def record_attempt(
        self,
        call: WebhookCall,
        attempt: int,
        status: str,
        status_code: int | None,
        error: str | None,
    ) -> None:
        params = {
            "key": call.idempotency_key,
            "event_id": call.event_id,
            "rule_id": call.rule_id,
            "action_index": call.action_index,
            "method": call.method,
            "url": call.url,
            "status": status,
            "attempt": attempt,
            "max_attempts": call.max_attempts,
            "code": status_code,
            "error": error,
        }
        await self._executemany(_RECORD_ATTEMPT, [params])

    async def _executemany(self, sql: str, params: Sequence[Any]) -> None:
        await self._db.executemany("workflow", sql, params)
