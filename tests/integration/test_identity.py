"""Identification and merging on the real broker and database: identify -> claims -> merge.

Profiles are created in a known order (each test sends the first events itself, or sets
``received_at``), so the winner of every merge is known: the earliest created profile.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from processors.migrate import apply_migrations
from schemas import RawEvent, encode
from schemas.topics import EVENTS_RAW
from tests.integration.conftest import Pipeline
from tests.integration.harness import (
    Services,
    TrackflowProcess,
    cli,
    fresh_database,
    poll,
)
from trackflow.localstack import free_port

SEEN: list[str] = []  # every profile id this module used, for the replay comparison


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _query(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _event(
    profile: str,
    at: datetime,
    kind: str = "page-view",
    *,
    traits: dict[str, Any] | None = None,
    user_id: str | None = None,
    previous_id: str | None = None,
) -> RawEvent:
    SEEN.append(profile)
    context: dict[str, Any] = {}
    if traits is not None:
        context["traits"] = traits
    if user_id is not None:
        context["user_id"] = user_id
    if previous_id is not None:
        context["previous_id"] = previous_id
    return RawEvent(
        id=_uid("ev"),
        type=kind,
        source_id="backend",
        profile_id=profile,
        received_at=at,
        context=context,
    )


async def _produce(bootstrap: str, events: Sequence[RawEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        pending = [
            await producer.send(EVENTS_RAW, key=e.profile_id.encode(), value=encode(e))
            for e in events
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _send(p: Pipeline, *events: RawEvent) -> list[str]:
    asyncio.run(_produce(p.kafka, events))
    return [e.id for e in events]


def _wait_stored(p: Pipeline, event_ids: Sequence[str], timeout: float = 60) -> None:
    poll(
        lambda: (
            _query(
                p.database_url, "SELECT count(*) FROM events WHERE id = ANY(%s)", list(event_ids)
            )
            == [(len(event_ids),)]
        ),
        timeout,
        f"{len(event_ids)} events stored",
    )


def _root(url: str, profile_id: str) -> str | None:
    rows = _query(url, "SELECT coalesce(merged_into, id) FROM profiles WHERE id = %s", profile_id)
    return rows[0][0] if rows else None


def _wait_roots(p: Pipeline, ids: Sequence[str], winner: str, timeout: float = 60) -> None:
    poll(
        lambda: all(_root(p.database_url, i) == winner for i in ids),
        timeout,
        f"{list(ids)} to resolve to {winner}",
    )


def _events_of(url: str, canonical: str) -> int:
    [(count,)] = _query(
        url,
        "SELECT count(*) FROM canonical_events WHERE canonical_profile_id = %s",
        canonical,
    )
    return int(count)


def _profile(url: str, profile_id: str) -> dict[str, Any]:
    [(traits, count, merged_into)] = _query(
        url, "SELECT traits, event_count, merged_into FROM profiles WHERE id = %s", profile_id
    )
    return {"traits": traits, "event_count": count, "merged_into": merged_into}


def _show(p: Pipeline, profile_id: str) -> dict[str, Any]:
    shown = cli("profile", "show", profile_id, "--json", env=p.env)
    assert shown.returncode == 0, shown.stderr
    result: dict[str, Any] = json.loads(shown.stdout)
    return result


def _track(p: Pipeline, profile: str, events: list[dict[str, Any]]) -> list[str]:
    SEEN.append(profile)
    response = httpx.post(
        f"{p.gateway_url}/track",
        json={"source": {"id": p.source_id}, "profile": {"id": profile}, "events": events},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["events"]
    return ids


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _no_orphan_events(url: str) -> None:
    """Every stored event belongs to exactly one canonical profile."""
    orphans = _query(
        url,
        "SELECT e.id FROM events e LEFT JOIN profiles p ON p.id = e.profile_id"
        " LEFT JOIN profiles r ON r.id = coalesce(p.merged_into, p.id)"
        " WHERE r.id IS NULL OR r.merged_into IS NOT NULL LIMIT 5",
    )
    assert orphans == []


def test_two_anonymous_browsers_that_identify_with_one_email_become_one_profile(
    pipeline: Pipeline,
) -> None:
    first, second = _uid("browser"), _uid("browser")
    email = f"ann.{uuid.uuid4().hex[:8]}@example.com"
    _wait_stored(pipeline, _track(pipeline, first, [{"type": "page-view"}]))
    _wait_stored(pipeline, _track(pipeline, second, [{"type": "page-view"}, {"type": "cart"}]))

    identify = {"type": "identify", "context": {"traits": {"email": email, "name": "Ann"}}}
    _track(pipeline, first, [identify])
    shouting = {"email": f"  {email.upper()} ", "plan": "pro"}
    _track(pipeline, second, [{"type": "identify", "context": {"traits": shouting}}])
    _wait_roots(pipeline, [first, second], first)

    # the old id keeps working: a later event of the merged-away browser lands on the winner
    [late] = _track(pipeline, second, [{"type": "purchase"}])
    _wait_stored(pipeline, [late])
    assert _query(pipeline.database_url, "SELECT profile_id FROM events WHERE id = %s", late) == [
        (first,)
    ]
    poll(
        lambda: _profile(pipeline.database_url, first)["event_count"] == 6,
        30,
        "six events counted on the winner",
    )
    assert _events_of(pipeline.database_url, first) == 6
    poll(
        lambda: (
            {"name", "plan", "email"} <= _profile(pipeline.database_url, first)["traits"].keys()
        ),
        30,
        "the traits of both browsers on the winner",
    )
    audit = _query(
        pipeline.database_url,
        "SELECT winner_id, identifier_type, identifier_value, reason FROM merge_audit"
        " WHERE loser_id = %s",
        second,
    )
    assert audit == [(first, "email", email, "shared_identifier")]

    shown = _show(pipeline, second)
    assert shown["id"] == first and shown["requested_id"] == second
    assert shown["aliases"] == [second]
    assert shown["events_stored"] == 6 and shown["event_count"] == 6
    assert shown["traits"]["name"] == "Ann" and shown["traits"]["plan"] == "pro"
    assert [(m["loser_id"], m["winner_id"]) for m in shown["merges"]] == [(second, first)]
    assert {i["type"] for i in shown["identifiers"]} == {"email"}
    text = cli("profile", "show", second, env=pipeline.env)
    assert text.returncode == 0 and f"({second} was merged into {first})" in text.stdout


def test_alias_and_identify_with_a_user_id_merge(pipeline: Pipeline) -> None:
    t0 = datetime.now(UTC)
    anonymous, signed_up = _uid("anon"), _uid("signed")
    _wait_stored(
        pipeline,
        _send(pipeline, _event(anonymous, t0), _event(signed_up, t0 + timedelta(seconds=1))),
    )
    _send(pipeline, _event(signed_up, t0 + timedelta(seconds=2), "alias", previous_id=anonymous))
    _wait_roots(pipeline, [anonymous, signed_up], anonymous)
    assert _query(
        pipeline.database_url, "SELECT reason FROM merge_audit WHERE loser_id = %s", signed_up
    ) == [("alias",)]

    phone, laptop = _uid("phone"), _uid("laptop")
    user = f"user-{uuid.uuid4().hex[:8]}"
    _send(
        pipeline,
        _event(phone, t0 + timedelta(seconds=3), "identify", user_id=user),
        _event(laptop, t0 + timedelta(seconds=4), "identify", user_id=user),
    )
    _wait_roots(pipeline, [phone, laptop], phone)
    assert _query(
        pipeline.database_url,
        "SELECT winner_id, identifier_type, reason FROM merge_audit WHERE loser_id = %s",
        laptop,
    ) == [(phone, "user_id", "user_id")]
    assert _metric(pipeline.worker_url, "trackflow_merges_total") >= 2


def test_a_chain_of_three_merges_resolves_to_one_profile_in_one_step(pipeline: Pipeline) -> None:
    t0 = datetime.now(UTC)
    a, b, c = _uid("a"), _uid("b"), _uid("c")
    _wait_stored(
        pipeline,
        _send(pipeline, *(_event(p, t0 + timedelta(seconds=i)) for i, p in enumerate((a, b, c)))),
    )
    t1 = t0 + timedelta(seconds=10)
    _send(
        pipeline,
        _event(b, t1, "identify", traits={"phone": "+44 20 7946 0958", "b": 1}),
        _event(c, t1, "identify", traits={"phone": "0044 (0)20 7946 0958", "c": 1}),
    )
    _wait_roots(pipeline, [c], b)
    email = f"chain.{uuid.uuid4().hex[:8]}@example.com"
    _send(
        pipeline,
        _event(a, t1 + timedelta(seconds=1), "identify", traits={"email": email, "a": 1}),
        _event(b, t1 + timedelta(seconds=1), "identify", traits={"email": email}),
    )
    _wait_roots(pipeline, [a, b, c], a)

    assert _query(
        pipeline.database_url,
        "SELECT id, merged_into FROM profiles WHERE id = ANY(%s) ORDER BY id",
        [b, c],
    ) == sorted([(b, a), (c, a)])  # c points straight at a: one step
    assert _query(
        pipeline.database_url,
        "SELECT alias_id, canonical_id FROM profile_aliases WHERE alias_id = ANY(%s)"
        " ORDER BY alias_id",
        [b, c],
    ) == sorted([(b, a), (c, a)])
    poll(
        lambda: _profile(pipeline.database_url, a)["event_count"] == 7,
        30,
        "seven events counted on the winner",
    )
    assert _events_of(pipeline.database_url, a) == 7
    poll(
        lambda: {"a", "b", "c"} <= _profile(pipeline.database_url, a)["traits"].keys(),
        30,
        "traits of all three profiles on the winner",
    )
    shown = _show(pipeline, c)
    assert shown["id"] == a and shown["aliases"] == sorted([b, c])
    assert len(shown["merges"]) == 2


def test_blocked_values_and_different_user_ids_never_merge(pipeline: Pipeline) -> None:
    t0 = datetime.now(UTC)
    p1, p2 = _uid("blocked"), _uid("blocked")
    before = _metric(pipeline.worker_url, "trackflow_identity_conflicts_total")
    _send(
        pipeline,
        _event(p1, t0, "identify", traits={"email": "null"}),
        _event(p2, t0 + timedelta(seconds=1), "identify", traits={"email": " NULL "}),
    )
    conflicts = cast(
        list[tuple[Any, ...]],
        poll(
            lambda: (
                len(
                    rows := _query(
                        pipeline.database_url,
                        "SELECT profile_ids, reason, identifier_value FROM identity_conflicts"
                        " WHERE profile_ids && %s::text[] ORDER BY detected_at",
                        [p1, p2],
                    )
                )
                == 2
                and rows
            ),
            30,
            "a conflict record for each blocked value",
        ),
    )
    assert [(ids, reason) for ids, reason, _ in conflicts] == [
        ([p1], "blocked_identifier"),
        ([p2], "blocked_identifier"),
    ]

    q1, q2 = _uid("user"), _uid("user")
    email = f"shared.{uuid.uuid4().hex[:8]}@example.com"
    _send(
        pipeline,
        _event(q1, t0 + timedelta(seconds=2), "identify", user_id="u-1", traits={"email": email}),
        _event(q2, t0 + timedelta(seconds=3), "identify", user_id="u-2", traits={"email": email}),
    )
    poll(
        lambda: _query(
            pipeline.database_url,
            "SELECT 1 FROM identity_conflicts WHERE reason = 'user_id_conflict'"
            " AND profile_ids = %s::text[]",
            sorted([q1, q2]),
        ),
        30,
        "a user_id_conflict record",
    )
    for profile in (p1, p2, q1, q2):
        assert _root(pipeline.database_url, profile) in (profile, None)
    assert _query(
        pipeline.database_url,
        "SELECT count(*) FROM merge_audit WHERE loser_id = ANY(%s)",
        [p1, p2, q1, q2],
    ) == [(0,)]
    poll(
        lambda: _metric(pipeline.worker_url, "trackflow_identity_conflicts_total") >= before + 3,
        10,
        "conflicts counted in trackflow_identity_conflicts_total",
    )


def test_a_session_ends_after_thirty_minutes_without_events(pipeline: Pipeline) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=2)
    profile, session = _uid("visitor"), _uid("session")
    events = [
        _event(profile, t0 + timedelta(minutes=minutes)).model_copy(update={"session_id": session})
        for minutes in (0, 10, 40)  # 30 minutes of silence before the third
    ]
    _wait_stored(pipeline, _send(pipeline, *events))
    stored = _query(
        pipeline.database_url,
        "SELECT session_id FROM events WHERE id = ANY(%s) ORDER BY received_at",
        [e.id for e in events],
    )
    first, second, third = (row[0] for row in stored)
    assert first == second == session and third not in (None, session)
    poll(
        lambda: (
            _query(
                pipeline.database_url,
                "SELECT id, event_count, started_at, last_seen_at FROM sessions"
                " WHERE id = ANY(%s) ORDER BY started_at",
                [session, third],
            )
            == [
                (session, 2, events[0].received_at, events[1].received_at),
                (third, 1, events[2].received_at, events[2].received_at),
            ]
        ),
        30,
        "two sessions with their start, last-seen and event count",
    )


def test_one_identifier_never_merges_more_profiles_than_the_cap(pipeline: Pipeline) -> None:
    t0 = datetime.now(UTC)
    cap = 10  # TRACKFLOW_MAX_PROFILES_PER_MERGE, default
    profiles = [_uid("shared") for _ in range(cap + 1)]
    email = f"support.{uuid.uuid4().hex[:8]}@example.com"
    _send(
        pipeline,
        *(
            _event(p, t0 + timedelta(seconds=i), "identify", traits={"email": email})
            for i, p in enumerate(profiles)
        ),
    )
    [(ids, detail)] = cast(
        list[tuple[Any, ...]],
        poll(
            lambda: _query(
                pipeline.database_url,
                "SELECT profile_ids, detail FROM identity_conflicts"
                " WHERE reason = 'cap_exceeded' AND identifier_value = %s",
                email,
            ),
            60,
            "a cap_exceeded conflict record",
        ),
    )
    assert f"held by {cap + 1} profiles" in detail
    groups = Counter(_root(pipeline.database_url, p) or "" for p in profiles)
    assert sorted(groups.values()) == [1, cap], groups  # ten merged, the eleventh refused
    assert sorted(ids) == sorted(groups)


@pytest.fixture
def second_worker(pipeline: Pipeline) -> Iterator[TrackflowProcess]:
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="trackflow-identity-logs-"))
    worker = TrackflowProcess(
        "worker",
        {**pipeline.env, "TRACKFLOW_WORKER_PORT": str(port)},
        f"http://127.0.0.1:{port}/readyz",
        logs,
    )
    worker.start(timeout=120)
    try:
        yield worker
    finally:
        worker.stop()
        shutil.rmtree(logs, ignore_errors=True)


def test_concurrent_conflicting_merges_on_two_workers_converge(
    pipeline: Pipeline, second_worker: TrackflowProcess
) -> None:
    groups, size = 8, 5
    rng = random.Random(7)
    t0 = datetime.now(UTC)
    members = [[_uid(f"g{g}") for _ in range(size)] for g in range(groups)]
    order = list(range(groups * size))
    rng.shuffle(order)  # creation order, so the winner of each group is known
    created = {pid: t0 + timedelta(milliseconds=order.pop()) for group in members for pid in group}
    events = []
    for g, group in enumerate(members):
        for i, pid in enumerate(group):
            # a ring: each profile shares one email with the next, so every email merges two
            # profiles, and the merges of one group run on different partitions at once
            stamp = int(t0.timestamp() * 1000)
            emails = [f"g{g}m{m}.{stamp}@example.com" for m in (i, (i + 1) % size)]
            traits = {"email": emails, f"trait_{i}": i}
            events.append(_event(pid, created[pid], "identify", traits=traits))
    rng.shuffle(events)
    merge_ok = {"stage": "merge", "outcome": "ok"}
    before = _metric(pipeline.worker_url, "trackflow_stage_events_total", **merge_ok)
    _send(pipeline, *events)

    winners = {
        g: min(group, key=lambda pid: (created[pid], pid)) for g, group in enumerate(members)
    }
    try:
        for g, group in enumerate(members):
            _wait_roots(pipeline, group, winners[g], timeout=120)
    except AssertionError:
        roots = {pid: _root(pipeline.database_url, pid) for group in members for pid in group}
        failed = _query(
            pipeline.database_url,
            "SELECT stage, reason FROM failed_events WHERE stage IN ('identify', 'merge')",
        )
        raise AssertionError(
            f"not converged; expected winners {winners}, roots {roots}, failures {failed}"
        ) from None
    for g, group in enumerate(members):
        poll(
            lambda g=g: (
                {f"trait_{i}" for i in range(size)}  # type: ignore[misc]
                <= _profile(pipeline.database_url, winners[g])["traits"].keys()
            ),
            30,
            f"every trait of group {g} on its winner",
        )
        assert _profile(pipeline.database_url, winners[g])["merged_into"] is None
        losers = sorted(set(group) - {winners[g]})
        audits = _query(
            pipeline.database_url,
            "SELECT loser_id, winner_id FROM merge_audit WHERE loser_id = ANY(%s) ORDER BY 1",
            losers,
        )
        # each loser merged exactly once, into a profile of its own group (its root then)
        assert [loser for loser, _ in audits] == losers
        assert {winner for _, winner in audits} <= set(group)
        poll(
            lambda g=g: _events_of(pipeline.database_url, winners[g]) == size,  # type: ignore[misc]
            30,
            f"the {size} events of group {g} under its winner",
        )
    assert _query(
        pipeline.database_url,
        "SELECT count(*) FROM failed_events WHERE stage IN ('identify', 'merge')"
        " AND event_id = ANY(%s)",
        [e.id for e in events],
    ) == [(0,)]
    _no_orphan_events(pipeline.database_url)
    second_url = second_worker.ready_url.removesuffix("/readyz")
    claims_processed = [
        _metric(pipeline.worker_url, "trackflow_stage_events_total", **merge_ok) - before,
        _metric(second_url, "trackflow_stage_events_total", **merge_ok),
    ]
    assert all(claims_processed), f"claims merged per worker: {claims_processed}"


def test_replaying_every_topic_into_a_fresh_database_gives_the_same_identities(
    pipeline: Pipeline, services: Services
) -> None:
    t0 = datetime.now(UTC)
    x, y, z = _uid("rx"), _uid("ry"), _uid("rz")
    email = f"replay.{uuid.uuid4().hex[:8]}@example.com"
    _send(
        pipeline,
        _event(x, t0, "identify", traits={"email": email, "x": 1}),
        _event(y, t0 + timedelta(seconds=1), "identify", traits={"email": email, "y": 2}),
        _event(z, t0 + timedelta(seconds=2), "identify", user_id="r-1", traits={"email": email}),
    )
    _wait_roots(pipeline, [x, y, z], x)
    main = pipeline.database_url
    ids = sorted(set(SEEN))
    poll(lambda: _settled(main, ids), 60, "the pipeline to settle before the replay")
    expected = _snapshot(main, ids)

    replay_url = fresh_database(services.database_url, "trackflow_identity_replay")
    apply_migrations(replay_url)
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="trackflow-replay-logs-"))
    env = {
        **pipeline.env,
        "TRACKFLOW_DATABASE_URL": replay_url,
        "TRACKFLOW_WORKER_ID": _uid("trackflow-replay"),
        "TRACKFLOW_WORKER_PORT": str(port),
    }
    worker = TrackflowProcess("worker", env, f"http://127.0.0.1:{port}/readyz", logs)
    worker.start(timeout=120)
    try:
        poll(
            lambda: _settled(replay_url, ids) and _snapshot(replay_url, ids) == expected,
            180,
            "the replay to reach the same profiles, aliases and counts",
            interval=1.0,
        )
    except AssertionError:
        actual = _snapshot(replay_url, ids)
        differ = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
        raise AssertionError(f"the replay differs (expected, replayed): {differ}") from None
    finally:
        worker.stop()
        shutil.rmtree(logs, ignore_errors=True)
    assert expected["roots"][y] == x and expected["roots"][z] == x
    _no_orphan_events(main)
    _no_orphan_events(replay_url)


def _settled(url: str, ids: Sequence[str]) -> bool:
    """Every profile's stored events are counted on its canonical profile."""
    rows = _query(
        url,
        "SELECT r.id, r.event_count, (SELECT count(*) FROM canonical_events c"
        "  WHERE c.canonical_profile_id = r.id)"
        " FROM profiles p JOIN profiles r ON r.id = coalesce(p.merged_into, p.id)"
        " WHERE p.id = ANY(%s)",
        list(ids),
    )
    return bool(rows) and all(count == stored for _, count, stored in rows)


def _snapshot(url: str, ids: Sequence[str]) -> dict[str, Any]:
    roots = dict(
        _query(url, "SELECT id, coalesce(merged_into, id) FROM profiles WHERE id = ANY(%s)", ids)
    )
    canonical = sorted(set(roots.values()))
    return {
        "roots": roots,
        "aliases": _query(
            url,
            "SELECT alias_id, canonical_id FROM profile_aliases WHERE alias_id = ANY(%s)"
            " ORDER BY 1",
            list(ids),
        ),
        "counts": _query(
            url,
            "SELECT id, event_count, created_at FROM profiles WHERE id = ANY(%s) ORDER BY 1",
            canonical,
        ),
        "events": _query(
            url,
            "SELECT canonical_profile_id, count(*) FROM canonical_events"
            " WHERE canonical_profile_id = ANY(%s) GROUP BY 1 ORDER BY 1",
            canonical,
        ),
        # each profile merged away once; whom it was merged into first depends on the order
        # of concurrent merges (the final canonical profile, in "roots", does not)
        "merged_once": _query(
            url,
            "SELECT loser_id, count(*) FROM merge_audit WHERE loser_id = ANY(%s)"
            " GROUP BY 1 ORDER BY 1",
            list(ids),
        ),
        "conflicts": _query(
            url,
            "SELECT id, reason FROM identity_conflicts WHERE profile_ids && %s::text[] ORDER BY 1",
            list(ids),
        ),
        "trait_keys": {
            pid: sorted(traits)
            for pid, traits in _query(
                url, "SELECT id, traits FROM profiles WHERE id = ANY(%s)", canonical
            )
        },
    }
