"""The merge stage's bulk path on the real database: recording a run of claims at once and
counting their holders in one query give what the one-claim-at-a-time path gives."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from processors.identity_store import IdentityStore
from processors.migrate import apply_migrations
from schemas.identity import PROFILE_ID, USER_ID, Identifier, IdentityClaim
from tests.integration.harness import Services, fresh_database

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _claims(rng: random.Random, count: int) -> list[IdentityClaim]:
    """Claims over few profiles and few values, so identifiers are shared and repeated."""
    found: list[IdentityClaim] = []
    for n in range(count):
        profile = f"p{rng.randrange(12)}"
        kind = rng.choice(["email", "email", "phone", USER_ID, PROFILE_ID])
        value = f"p{rng.randrange(12)}" if kind == PROFILE_ID else f"{kind}-{rng.randrange(6)}"
        found.append(
            IdentityClaim(
                identifier=Identifier(type=kind, value=value, hashed=rng.random() < 0.1),
                profile_id=profile,
                event_id=f"e{n}",
                event_type="identify",
                claimed_at=T0 + timedelta(seconds=n),
                user_id=f"u{rng.randrange(3)}" if rng.random() < 0.3 else None,
                profile_created_at=T0 + timedelta(minutes=int(profile[1:])),
            )
        )
    return found


def _rows(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return {
            "profiles": conn.execute("SELECT id, created_at FROM profiles ORDER BY 1").fetchall(),
            "identifiers": conn.execute(
                "SELECT type, value, profile_id, hashed, reason, event_id, first_seen_at"
                " FROM identifiers ORDER BY 1, 2, 3"
            ).fetchall(),
        }


async def _record(url: str, claims: list[IdentityClaim], bulk: bool) -> None:
    store = IdentityStore(url)
    await store.start()
    try:
        async with store.connection("merge") as conn:
            if bulk:
                for start in range(0, len(claims), 7):
                    await store.record_claims(conn, claims[start : start + 7], False)
            else:
                for claim in claims:
                    await store.record_claim(conn, claim, False)
    finally:
        await store.stop()


async def _counts(url: str, claims: list[IdentityClaim]) -> tuple[list[int], list[int]]:
    store = IdentityStore(url)
    await store.start()
    try:
        async with store.connection("merge") as conn:
            bulk = await store.holder_counts(conn, claims)
            one_by_one = [len(await store.holders(conn, claim)) for claim in claims]
    finally:
        await store.stop()
    return bulk, one_by_one


def test_bulk_recording_and_holder_counts_match_the_one_claim_path(services: Services) -> None:
    rng = random.Random(7)
    claims = _claims(rng, 120)
    urls = []
    for name in ("trackflow_claims_bulk", "trackflow_claims_single"):
        url = fresh_database(services.database_url, name)
        apply_migrations(url)
        urls.append(url)
    bulk_url, single_url = urls
    asyncio.run(_record(bulk_url, claims, bulk=True))
    asyncio.run(_record(single_url, claims, bulk=False))
    recorded = _rows(bulk_url)
    assert recorded == _rows(single_url)
    assert len(recorded["profiles"]) == 12 and len(recorded["identifiers"]) > 30

    with psycopg.connect(bulk_url) as conn:  # a few merges: holders resolve to roots
        conn.execute("UPDATE profiles SET merged_into = 'p0' WHERE id IN ('p3', 'p5', 'p7')")
        conn.execute("UPDATE profiles SET merged_into = 'p1' WHERE id = 'p9'")
    bulk, one_by_one = asyncio.run(_counts(bulk_url, claims))
    assert bulk == one_by_one
    assert min(bulk) == 1 and max(bulk) >= 3, bulk  # single holders and shared values both
