"""PostgreSQL adapter of the identify and merge stages (psycopg 3).

PostgreSQL is the one source of truth for identity: ``profiles.merged_into`` (always a
root), ``profile_aliases``, ``identifiers``, ``merge_audit``, ``identity_conflicts`` and the
identify stage's own state per profile id (``identify_state``: session, first seen, user
id, identifiers already claimed). Both stages read it per batch, so a restarted or added
worker, or one that takes over a partition in a rebalance, continues from what was
committed, and a merge is visible to the identify stage as soon as it commits.

``apply_plan`` applies a ``MergePlan`` exactly as ``processors.identity.apply`` describes:
lock the plan's profiles and their roots in one statement in id order, start again when a
root moved, write canonical rows only. A deadlock or serialisation failure that PostgreSQL
reports anyway (another writer locking differently) rolls back and starts again too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from processors.errors import StoreUnavailable
from processors.identity import MergeConfig, TraitPolicy, apply_merge_plan
from processors.identity.apply import MergeApplication
from processors.pg import Database
from schemas.identity import (
    PROFILE_ID,
    USER_ID,
    Claimant,
    Identifier,
    IdentifyState,
    IdentityClaim,
    IdentityConflict,
    MergeHistoryEntry,
    MergePlan,
    ProfileState,
)

__all__ = ["IdentityStore", "KnownProfile"]

Conn = psycopg.AsyncConnection[Any]
_ROUNDS = 8


@dataclass(frozen=True)
class KnownProfile:
    id: str
    created_at: datetime
    merged_into: str | None
    canonical_created_at: datetime

    @property
    def canonical_id(self) -> str:
        return self.merged_into or self.id


class _RootMoved(Exception):
    pass


class IdentityStore:
    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        # autocommit: every transaction is an explicit ``conn.transaction()`` block
        self._db = Database(dsn, max_size=max_connections, autocommit=True)

    async def start(self) -> None:
        await self._db.start()

    async def stop(self) -> None:
        await self._db.stop()

    @asynccontextmanager
    async def connection(self, stage: str) -> AsyncIterator[Conn]:
        """A connection; an outage surfaces as the retriable ``StoreUnavailable``, data that
        PostgreSQL refuses as ``InvalidEvent``."""
        async with self._db.connection(stage) as conn:
            yield conn

    # -- identify ---------------------------------------------------------------------------

    async def load_identify(
        self, profile_ids: Sequence[str]
    ) -> tuple[dict[str, IdentifyState], dict[str, KnownProfile]]:
        ids = sorted(set(profile_ids))
        async with self.connection("identify") as conn:
            states = await _fetch(
                conn, "SELECT profile_id, state FROM identify_state WHERE profile_id = ANY(%s)", ids
            )
            known = await _fetch(
                conn,
                "SELECT p.id, p.created_at, p.merged_into, coalesce(c.created_at, p.created_at)"
                " FROM profiles p LEFT JOIN profiles c ON c.id = p.merged_into"
                " WHERE p.id = ANY(%s)",
                ids,
            )
        return (
            {pid: IdentifyState.model_validate(state) for pid, state in states},
            {row[0]: KnownProfile(*row) for row in known},
        )

    async def save_identify(
        self, states: Mapping[str, IdentifyState], conflicts: Sequence[IdentityConflict]
    ) -> list[IdentityConflict]:
        """Store the states; record the conflicts; return those recorded now (not before)."""
        ids = sorted(states)
        async with self.connection("identify") as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO identify_state AS s (profile_id, state)"
                " SELECT * FROM unnest(%s::text[], %s::jsonb[]) ORDER BY 1"
                " ON CONFLICT (profile_id) DO UPDATE SET state = EXCLUDED.state,"
                " updated_at = now()",
                (ids, [Jsonb(states[i].model_dump(mode="json")) for i in ids]),
            )
            return [c for c in conflicts if await _insert_conflict(conn, c)]

    # -- merge ------------------------------------------------------------------------------

    async def record_claim(self, conn: Conn, claim: IdentityClaim, user_id_hashed: bool) -> None:
        """The claiming profile exists, and holds the identifier (and its user id)."""
        await self.record_claims(conn, [claim], user_id_hashed)

    async def record_claims(
        self, conn: Conn, claims: Sequence[IdentityClaim], user_id_hashed: bool
    ) -> None:
        """:meth:`record_claim` for each claim, in one transaction (rows in key order)."""
        profiles: dict[str, datetime] = {}
        held: dict[tuple[str, str, str, bool], IdentityClaim] = {}
        for claim in claims:
            created = claim.profile_created_at or claim.claimed_at
            profiles.setdefault(claim.profile_id, created)
            identifiers = [claim.identifier]
            if claim.user_id and claim.identifier.type != USER_ID:
                identifiers.append(
                    Identifier(type=USER_ID, value=claim.user_id, hashed=user_id_hashed)
                )
            for i in identifiers:
                held.setdefault((i.type, i.value, claim.profile_id, i.hashed), claim)
        ids = sorted(profiles)
        keys = sorted(held)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO profiles (id, created_at, last_event_at)"
                " SELECT id, at, at FROM unnest(%s::text[], %s::timestamptz[]) AS t(id, at)"
                " ORDER BY id ON CONFLICT (id) DO NOTHING",
                (ids, [profiles[i] for i in ids]),
            )
            await conn.execute(
                "INSERT INTO identifiers"
                " (type, value, profile_id, hashed, reason, event_id, first_seen_at)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bool[],"
                " %s::text[], %s::text[], %s::timestamptz[]) ORDER BY 1, 2, 3"
                " ON CONFLICT DO NOTHING",
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [k[3] for k in keys],
                    [held[k].reason for k in keys],
                    [held[k].event_id for k in keys],
                    [held[k].claimed_at for k in keys],
                ),
            )

    async def holder_counts(self, conn: Conn, claims: Sequence[IdentityClaim]) -> list[int]:
        """For each claim, how many canonical profiles :meth:`holders` would return (in
        one query for all of them)."""
        rows = await _fetch(
            conn,
            "SELECT t.n, count(DISTINCT r.root) FROM unnest(%s::text[], %s::text[], %s::bool[],"
            " %s::text[], %s::text[]) WITH ORDINALITY AS t(type, value, hashed, claimant, named, n)"
            " CROSS JOIN LATERAL ("
            "  SELECT coalesce(p.merged_into, p.id) FROM identifiers i"
            "  JOIN profiles p ON p.id = i.profile_id"
            "  WHERE i.type = t.type AND i.value = t.value AND i.hashed = t.hashed"
            "  UNION ALL SELECT coalesce(p.merged_into, p.id) FROM profiles p"
            "  WHERE p.id = t.claimant OR p.id = t.named"
            " ) AS r(root) GROUP BY t.n",
            [c.identifier.type for c in claims],
            [c.identifier.value for c in claims],
            [c.identifier.hashed for c in claims],
            [c.profile_id for c in claims],
            [c.identifier.value if c.identifier.type == PROFILE_ID else None for c in claims],
        )
        counts = dict(rows)
        return [int(counts.get(n, 0)) for n in range(1, len(claims) + 1)]

    async def holders(self, conn: Conn, claim: IdentityClaim) -> list[Claimant]:
        """The canonical profiles holding the claim's identifier, the claimant's with the
        user id the claim knows of. A ``profile_id`` identifier is also held by the
        profile it names."""
        identifier = claim.identifier
        roots = {
            row[0]
            for row in await _fetch(
                conn,
                "SELECT DISTINCT coalesce(p.merged_into, p.id) FROM identifiers i"
                " JOIN profiles p ON p.id = i.profile_id"
                " WHERE i.type = %s AND i.value = %s AND i.hashed = %s",
                identifier.type,
                identifier.value,
                identifier.hashed,
            )
        }
        if identifier.type == PROFILE_ID:
            roots |= {
                row[0]
                for row in await _fetch(
                    conn,
                    "SELECT coalesce(merged_into, id) FROM profiles WHERE id = %s",
                    identifier.value,
                )
            }
        [[claimant_root]] = await _fetch(
            conn, "SELECT coalesce(merged_into, id) FROM profiles WHERE id = %s", claim.profile_id
        )
        roots.add(claimant_root)
        created = dict(
            await _fetch(
                conn, "SELECT id, created_at FROM profiles WHERE id = ANY(%s)", sorted(roots)
            )
        )
        user_ids = await _user_ids(conn, sorted(roots))
        if claim.user_id:
            user_ids.setdefault(claimant_root, set()).add(claim.user_id)
        return [
            Claimant(
                profile_id=root,
                created_at=created[root],
                user_ids=tuple(sorted(user_ids.get(root, ()))),
            )
            for root in sorted(roots)
        ]

    async def merged_through(self, conn: Conn, identifier: Identifier) -> int:
        """How many profiles were merged away through ``identifier``."""
        [[count]] = await _fetch(
            conn,
            "SELECT count(*) FROM merge_audit"
            " WHERE identifier_type = %s AND identifier_value = %s AND hashed = %s",
            identifier.type,
            identifier.value,
            identifier.hashed,
        )
        return int(count)

    async def record_conflict(self, conn: Conn, conflict: IdentityConflict) -> bool:
        async with conn.transaction():
            return await _insert_conflict(conn, conflict)

    async def apply_plan(
        self, conn: Conn, plan: MergePlan, policy: TraitPolicy, config: MergeConfig
    ) -> MergeApplication | IdentityConflict:
        """Apply ``plan`` in one transaction, per the contract in processors.identity.apply."""
        for _ in range(_ROUNDS):
            try:
                async with conn.transaction():
                    return await _apply_once(conn, plan, policy, config)
            except _RootMoved:
                continue
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                continue
        raise StoreUnavailable(
            "merge", f"profiles of the merge through {plan.identifier.type} kept moving"
        )


async def _fetch(conn: Conn, sql: str, *params: object) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchall()


async def _insert_conflict(conn: Conn, c: IdentityConflict) -> bool:
    cursor = await conn.execute(
        "INSERT INTO identity_conflicts (id, identifier_type, identifier_value, hashed,"
        " profile_ids, reason, detail, event_id, detected_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            c.id,
            c.identifier.type,
            c.identifier.value,
            c.identifier.hashed,
            list(c.profile_ids),
            c.reason,
            c.detail,
            c.event_id,
            c.detected_at,
        ),
    )
    return cursor.rowcount == 1


async def _user_ids(conn: Conn, roots: Sequence[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for root, value in await _fetch(
        conn,
        "SELECT coalesce(p.merged_into, p.id), i.value FROM identifiers i"
        " JOIN profiles p ON p.id = i.profile_id"
        " WHERE i.type = %s AND (i.profile_id = ANY(%s) OR i.profile_id IN"
        " (SELECT alias_id FROM profile_aliases WHERE canonical_id = ANY(%s)))",
        USER_ID,
        list(roots),
        list(roots),
    ):
        found.setdefault(root, set()).add(value)
    return found


async def _identifiers(conn: Conn, roots: Sequence[str]) -> dict[str, list[Identifier]]:
    found: dict[str, list[Identifier]] = {}
    for root, kind, value, hashed in await _fetch(
        conn,
        "SELECT coalesce(p.merged_into, p.id), i.type, i.value, i.hashed FROM identifiers i"
        " JOIN profiles p ON p.id = i.profile_id"
        " WHERE i.profile_id = ANY(%s) OR i.profile_id IN"
        " (SELECT alias_id FROM profile_aliases WHERE canonical_id = ANY(%s))",
        list(roots),
        list(roots),
    ):
        found.setdefault(root, []).append(Identifier(type=kind, value=value, hashed=hashed))
    return found


async def _apply_once(
    conn: Conn, plan: MergePlan, policy: TraitPolicy, config: MergeConfig
) -> MergeApplication | IdentityConflict:
    claimants = sorted(plan.claimants, key=lambda c: c.profile_id)
    await conn.execute(
        "INSERT INTO profiles (id, created_at, last_event_at)"
        " SELECT id, at, at FROM unnest(%s::text[], %s::timestamptz[]) AS c(id, at) ORDER BY 1"
        " ON CONFLICT (id) DO NOTHING",
        ([c.profile_id for c in claimants], [c.created_at for c in claimants]),
    )
    ids = sorted(set(plan.profile_ids))
    seen = dict(
        await _fetch(
            conn, "SELECT id, coalesce(merged_into, id) FROM profiles WHERE id = ANY(%s)", ids
        )
    )
    wanted = sorted(set(ids) | set(seen.values()))
    locked = dict(
        await _fetch(
            conn,
            "SELECT id, merged_into FROM profiles WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            wanted,
        )
    )
    roots = sorted({locked.get(i) or i for i in ids})
    if any(root not in locked or locked[root] is not None for root in roots):
        raise _RootMoved  # a root was merged since it was read: never lock more while holding
    states = await _load_states(conn, wanted, roots)
    result = apply_merge_plan(plan, states, policy, config)
    if isinstance(result, IdentityConflict):
        await _insert_conflict(conn, result)
        return result
    if result.changed:
        await _write(conn, plan, result)
    return result


async def _load_states(
    conn: Conn, ids: Sequence[str], roots: Sequence[str]
) -> dict[str, ProfileState]:
    identifiers = await _identifiers(conn, roots)
    rows = await _fetch(
        conn,
        "SELECT id, created_at, traits, trait_times, tags, merged_into, merge_history"
        " FROM profiles WHERE id = ANY(%s)",
        list(ids),
    )
    return {
        pid: ProfileState(
            id=pid,
            created_at=created,
            traits=traits,
            trait_times=times,
            tags=tuple(tags),
            identifiers=tuple(identifiers.get(pid, ())) if merged is None else (),
            merged_into=merged,
            merge_history=tuple(MergeHistoryEntry.model_validate(h) for h in history),
        )
        for pid, created, traits, times, tags, merged, history in rows
    }


async def _write(conn: Conn, plan: MergePlan, result: MergeApplication) -> None:
    winner = result.winner
    losers = sorted(loser.id for loser in result.losers)
    await conn.execute(
        "UPDATE profiles AS w SET traits = %s, trait_times = %s, tags = %s, merge_history = %s,"
        " event_count = w.event_count + l.event_count,"
        " last_event_at = greatest(w.last_event_at, l.last_event_at),"
        " geo = coalesce(w.geo, l.geo), device = coalesce(w.device, l.device),"
        " updated_at = now()"
        " FROM (SELECT coalesce(sum(event_count), 0) AS event_count,"
        "  max(last_event_at) AS last_event_at,"
        "  (array_agg(geo ORDER BY last_event_at DESC) FILTER (WHERE geo IS NOT NULL))[1] AS geo,"
        "  (array_agg(device ORDER BY last_event_at DESC)"
        "   FILTER (WHERE device IS NOT NULL))[1] AS device"
        "  FROM profiles WHERE id = ANY(%s)) AS l"
        " WHERE w.id = %s",
        (
            Jsonb(winner.traits),
            Jsonb({k: t.isoformat() for k, t in winner.trait_times.items()}),
            list(winner.tags),
            Jsonb([h.model_dump(mode="json") for h in winner.merge_history]),
            losers,
            winner.id,
        ),
    )
    await conn.execute(
        "UPDATE profiles SET merged_into = %s, updated_at = now() WHERE id = ANY(%s)",
        (winner.id, losers),
    )
    moved = await _fetch(
        conn,
        "UPDATE profiles SET merged_into = %s, updated_at = now()"
        " WHERE merged_into = ANY(%s) RETURNING id",
        winner.id,
        losers,
    )
    aliases = sorted({*losers, *(row[0] for row in moved)})
    await conn.execute(
        "INSERT INTO profile_aliases (alias_id, canonical_id, merged_at)"
        " SELECT unnest(%s::text[]), %s, %s ORDER BY 1"
        " ON CONFLICT (alias_id) DO UPDATE SET canonical_id = EXCLUDED.canonical_id",
        (aliases, winner.id, plan.decided_at),
    )
    for audit in result.audits:
        await conn.execute(
            "INSERT INTO merge_audit (loser_id, id, winner_id, identifier_type,"
            " identifier_value, hashed, reason, event_id, decided_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (loser_id) DO NOTHING",
            (
                audit.loser_id,
                audit.id,
                audit.winner_id,
                audit.identifier.type,
                audit.identifier.value,
                audit.identifier.hashed,
                audit.reason,
                audit.event_id,
                audit.decided_at,
            ),
        )
