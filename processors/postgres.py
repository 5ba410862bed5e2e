"""PostgreSQL adapter for the store stage (psycopg 3, async pool, COPY into a temp table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from processors.errors import StoreUnavailable
from processors.pg import Database
from processors.store import (
    EVENT_COLUMNS,
    EventRow,
    ProfileActivity,
    canonical_activity,
    identify_traits,
)
from schemas import EventSource, FailedEvent

__all__ = ["PostgresStore"]

_COLUMNS = ", ".join(EVENT_COLUMNS)

_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming_events"
    " (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)

_CREATE_STORED = (
    "CREATE TEMP TABLE IF NOT EXISTS stored_events (profile_id text, received_at timestamptz,"
    " geo jsonb, device jsonb, traits jsonb) ON COMMIT DELETE ROWS"
)

# One statement: insert the new events, count session activity for exactly the rows that
# were new (so replays change nothing), and keep those rows for the profile activity.
_UPSERT = f"""
WITH new AS (
    INSERT INTO events ({_COLUMNS})
    SELECT {_COLUMNS} FROM incoming_events
    ON CONFLICT (id) DO NOTHING
    RETURNING profile_id, session_id, received_at, enrichment->'geo' AS geo,
              enrichment->'device' AS device,
              CASE WHEN type = 'identify' AND jsonb_typeof(context->'traits') = 'object'
                   THEN context->'traits' END AS traits
), session_activity AS (
    INSERT INTO sessions AS s (id, profile_id, started_at, last_seen_at, event_count, geo, device)
    SELECT session_id, min(profile_id), min(received_at), max(received_at), count(*),
           (array_agg(geo ORDER BY received_at) FILTER (WHERE geo IS NOT NULL))[1],
           (array_agg(device ORDER BY received_at) FILTER (WHERE device IS NOT NULL))[1]
    FROM new WHERE session_id IS NOT NULL AND profile_id IS NOT NULL GROUP BY session_id
    ON CONFLICT (id) DO UPDATE SET
        event_count = s.event_count + EXCLUDED.event_count,
        started_at = least(s.started_at, EXCLUDED.started_at),
        last_seen_at = greatest(s.last_seen_at, EXCLUDED.last_seen_at),
        geo = CASE WHEN EXCLUDED.started_at < s.started_at
                   THEN coalesce(EXCLUDED.geo, s.geo) ELSE coalesce(s.geo, EXCLUDED.geo) END,
        device = CASE WHEN EXCLUDED.started_at < s.started_at
                   THEN coalesce(EXCLUDED.device, s.device)
                   ELSE coalesce(s.device, EXCLUDED.device) END
)
INSERT INTO stored_events SELECT profile_id, received_at, geo, device, traits FROM new
WHERE profile_id IS NOT NULL
"""

_PROFILE_ACTIVITY = """
SELECT profile_id, min(received_at), max(received_at), count(*),
       (array_agg(geo ORDER BY received_at DESC) FILTER (WHERE geo IS NOT NULL))[1],
       (array_agg(device ORDER BY received_at DESC) FILTER (WHERE device IS NOT NULL))[1],
       array_agg(received_at ORDER BY received_at) FILTER (WHERE traits IS NOT NULL),
       array_agg(traits ORDER BY received_at) FILTER (WHERE traits IS NOT NULL)
FROM stored_events GROUP BY profile_id
"""

_MERGED = "SELECT id, merged_into FROM profiles WHERE id = ANY(%s) AND merged_into IS NOT NULL"

# Profile rows are written as every writer of them must (processors.identity.apply): to
# canonical profiles only, upserted in id order; an id missing from RETURNING was merged
# meanwhile, and its activity goes to the profile it was merged into.
_UPSERT_PROFILES = """
INSERT INTO profiles AS p
    (id, created_at, last_event_at, event_count, geo, device, traits, trait_times)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[],
                     %s::jsonb[], %s::jsonb[], %s::jsonb[], %s::jsonb[])
ORDER BY 1
ON CONFLICT (id) DO UPDATE SET
    event_count = p.event_count + EXCLUDED.event_count,
    last_event_at = greatest(p.last_event_at, EXCLUDED.last_event_at),
    geo = CASE WHEN EXCLUDED.last_event_at >= p.last_event_at
               THEN coalesce(EXCLUDED.geo, p.geo) ELSE coalesce(p.geo, EXCLUDED.geo) END,
    device = CASE WHEN EXCLUDED.last_event_at >= p.last_event_at
               THEN coalesce(EXCLUDED.device, p.device)
               ELSE coalesce(p.device, EXCLUDED.device) END,
    traits = trackflow_newer_traits(p.traits, p.trait_times, EXCLUDED.traits,
                                    EXCLUDED.trait_times),
    trait_times = trackflow_newer_trait_times(p.trait_times, EXCLUDED.trait_times),
    updated_at = now()
WHERE p.merged_into IS NULL
RETURNING id
"""
_PROFILE_ROUNDS = 8

_INSERT_FAILED = """
INSERT INTO failed_events
    (stage, reason, topic, kafka_partition, kafka_offset, event_id, failed_at, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (stage, topic, kafka_partition, kafka_offset) DO NOTHING
"""


_UPSERT_SOURCE = """
INSERT INTO sources AS s (id, name, enabled, config, updated_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, enabled = EXCLUDED.enabled,
    config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
WHERE s.updated_at <= EXCLUDED.updated_at
"""


def _activity(row: Sequence[Any]) -> ProfileActivity:
    profile_id, first_at, last_at, count, geo, device, times, traits = row
    merged, merged_times = identify_traits(list(zip(times or [], traits or [], strict=True)))
    return ProfileActivity(
        profile_id, first_at, last_at, int(count), geo, device, merged, merged_times
    )


async def _write_profile_activity(
    conn: psycopg.AsyncConnection[Any], activity: Sequence[ProfileActivity]
) -> None:
    pending = list(activity)
    for _ in range(_PROFILE_ROUNDS):
        if not pending:
            return
        cursor = await conn.execute(_MERGED, ([a.profile_id for a in pending],))
        pending = canonical_activity(pending, dict(await cursor.fetchall()))
        cursor = await conn.execute(_UPSERT_PROFILES, _profile_columns(pending))
        written = {row[0] for row in await cursor.fetchall()}
        pending = [a for a in pending if a.profile_id not in written]
    if pending:
        raise StoreUnavailable("store", f"profiles {[a.profile_id for a in pending]} kept moving")


def _profile_columns(activity: Sequence[ProfileActivity]) -> tuple[list[Any], ...]:
    return (
        [a.profile_id for a in activity],
        [a.first_at for a in activity],
        [a.last_at for a in activity],
        [a.count for a in activity],
        [None if a.geo is None else Jsonb(a.geo) for a in activity],
        [None if a.device is None else Jsonb(a.device) for a in activity],
        [Jsonb(a.traits) for a in activity],
        [Jsonb({k: t.isoformat() for k, t in a.trait_times.items()}) for a in activity],
    )


class PostgresStore:
    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        self._db = Database(dsn, max_size=max_connections)

    async def start(self) -> None:
        await self._db.start()

    async def stop(self) -> None:
        await self._db.stop()

    async def ping(self) -> tuple[bool, str]:
        return await self._db.ping()

    async def write_events(self, rows: Sequence[EventRow]) -> int:
        """Store the rows in one transaction; return how many were new."""
        async with self._db.transaction("store") as conn:
            await conn.execute(_CREATE_STAGING)
            async with conn.cursor().copy(f"COPY incoming_events ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            await conn.execute(_CREATE_STORED)
            await conn.execute(_UPSERT)
            cursor = await conn.execute(_PROFILE_ACTIVITY)
            activity = [_activity(row) for row in await cursor.fetchall()]
            await _write_profile_activity(conn, activity)
            return sum(item.count for item in activity)

    async def write_failed(self, failures: Sequence[FailedEvent]) -> None:
        params = [
            (
                f.stage,
                f.reason,
                f.topic,
                f.partition,
                f.offset,
                f.event_id,
                f.failed_at,
                f.payload.replace("\x00", "\ufffd"),
            )
            for f in failures
        ]
        await self._db.executemany("store", _INSERT_FAILED, params)

    async def write_sources(self, sources: Sequence[EventSource]) -> None:
        """Mirror sources from the config topic; an older record never overwrites a newer."""
        params = [
            (s.id, s.name, s.enabled, Jsonb(s.model_dump(mode="json")), s.updated_at)
            for s in sources
        ]
        await self._db.executemany("config", _UPSERT_SOURCE, params)

    async def read_sources(self) -> list[EventSource]:
        async with self._db.connection("config") as conn:
            cursor = await conn.execute("SELECT config FROM sources")
            return [EventSource.model_validate(row[0]) for row in await cursor.fetchall()]
