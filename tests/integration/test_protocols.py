"""Every client's protocol on the real stack, with the real client libraries: Segment's
``segment-analytics-python`` and the legacy ``analytics-python``, Snowplow's
``snowplow-tracker``, webhooks on ``/collect``, and batches with some bad items. Each
message is looked for in PostgreSQL's ``events`` table."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import analytics as legacy_analytics
import httpx
import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from segment import analytics as segment_analytics
from snowplow_tracker.emitters import Emitter
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from ingest_gateway.segment import profile_id_for_user
from schemas.topics import EVENTS_RAW
from tests.integration.conftest import Pipeline
from tests.integration.faults import topic_partitions
from tests.integration.harness import cli, poll

SEGMENT_COLUMNS = (
    "type, profile_id, protocol, source_id, properties, context->>'user_id',"
    " context->'traits', context->>'previous_id', context->'segment'->>'messageId'"
)


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _rows(p: Pipeline, columns: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(p.database_url) as conn:
        rows = conn.execute(
            f"SELECT id, {columns} FROM events WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _landed(p: Pipeline, columns: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """The rows of ``ids``, once every one of them is stored."""
    found = poll(
        lambda: (rows := _rows(p, columns, ids)) and len(rows) == len(ids) and rows,
        60,
        f"{len(ids)} events in PostgreSQL",
    )
    assert isinstance(found, dict)
    return found


@dataclass(frozen=True)
class KeyedSource:
    source_id: str
    key: str


@pytest.fixture(scope="module")
def keyed(pipeline: Pipeline) -> Iterator[KeyedSource]:
    """A source with a write key, once the gateway knows it."""
    key, source_id = _uid("wk"), _uid("segment-app")
    added = cli("sources", "add", "Segment app", "--id", source_id, "--write-key", key,
                env=pipeline.env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    settings_url = f"{pipeline.gateway_url}/v1/projects/{key}/settings"
    poll(lambda: httpx.get(settings_url, timeout=5).status_code == 200, 20, "the write key", 0.25)
    yield KeyedSource(source_id, key)


def _send_every_call(client: Any, user_id: str, anonymous_id: str, previous_id: str) -> list[str]:
    """identify, track, page, screen, group and alias, each with a known message id."""
    ids = [_uid(kind) for kind in ("identify", "track", "page", "screen", "group", "alias")]
    traits = {"email": f"{user_id}@example.com", "plan": "pro"}
    client.identify(user_id, traits, anonymous_id=anonymous_id, message_id=ids[0])
    client.track(user_id, "Order Completed", {"total": 42.5}, anonymous_id=anonymous_id,
                 message_id=ids[1])  # fmt: skip
    client.page(user_id, "Docs", "Intro", {"url": "https://docs.example/intro"},
                anonymous_id=anonymous_id, message_id=ids[2])  # fmt: skip
    client.screen(user_id, "App", "Settings", {"tab": "privacy"}, anonymous_id=anonymous_id,
                  message_id=ids[3])  # fmt: skip
    client.group(user_id, "acme", {"name": "Acme"}, anonymous_id=anonymous_id, message_id=ids[4])
    client.alias(previous_id, user_id, message_id=ids[5])
    return ids


def _assert_every_call_landed(
    pipeline: Pipeline,
    ids: list[str],
    user_id: str,
    anonymous_id: str,
    previous_id: str,
    source: str,
) -> None:
    rows = _landed(pipeline, SEGMENT_COLUMNS, ids)
    identify, track, page, screen, group, alias = (rows[i] for i in ids)
    assert [r[0] for r in (identify, track, page, screen, group, alias)] == [
        "identify", "Order Completed", "page", "screen", "group", "alias",
    ]  # fmt: skip
    for row, message_id in zip((identify, track, page, screen, group), ids, strict=False):
        assert row[1:4] == (anonymous_id, "segment", source)
        assert row[5] == user_id and row[8] == message_id
    assert identify[6] == {"email": f"{user_id}@example.com", "plan": "pro"}
    assert track[4] == {"total": 42.5}
    assert page[4] == {"url": "https://docs.example/intro"}
    assert screen[4] == {"tab": "privacy"}
    assert alias[1] == profile_id_for_user(user_id)  # alias has no anonymousId
    assert alias[5] == user_id and alias[7] == previous_id
    _assert_the_profile_has_the_traits_and_the_alias_merged(pipeline, anonymous_id, user_id)


def _root(p: Pipeline, profile_id: str) -> str | None:
    with psycopg.connect(p.database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(merged_into, id) FROM profiles WHERE id = %s", (profile_id,)
        ).fetchone()
    return row[0] if row else None


def _assert_the_profile_has_the_traits_and_the_alias_merged(
    p: Pipeline, anonymous_id: str, user_id: str
) -> None:
    """identify set the traits on the profile; identify and alias, both with the user id,
    put the anonymous profile and the user's derived profile into one."""
    derived = profile_id_for_user(user_id)
    root = poll(
        lambda: (r := _root(p, anonymous_id)) is not None and _root(p, derived) == r and r,
        60,
        f"profiles {anonymous_id} and {derived} to merge",
    )
    with psycopg.connect(p.database_url) as conn:
        row = conn.execute("SELECT traits FROM profiles WHERE id = %s", (root,)).fetchone()
    assert row is not None
    assert {"email": f"{user_id}@example.com", "plan": "pro"}.items() <= row[0].items()


def test_segment_analytics_python_calls_land_as_events(
    pipeline: Pipeline, keyed: KeyedSource
) -> None:
    client = segment_analytics.Client(
        keyed.key, host=pipeline.gateway_url, sync_mode=True, max_retries=0
    )
    user_id, anonymous_id, previous_id = _uid("user"), _uid("anon"), _uid("previous")
    ids = _send_every_call(client, user_id, anonymous_id, previous_id)
    _assert_every_call_landed(pipeline, ids, user_id, anonymous_id, previous_id, keyed.source_id)


def test_legacy_analytics_python_calls_land_as_events(
    pipeline: Pipeline, keyed: KeyedSource
) -> None:
    client = legacy_analytics.Client(
        keyed.key, host=pipeline.gateway_url, sync_mode=True, max_retries=0
    )
    user_id, anonymous_id, previous_id = _uid("user"), _uid("anon"), _uid("previous")
    ids = _send_every_call(client, user_id, anonymous_id, previous_id)
    _assert_every_call_landed(pipeline, ids, user_id, anonymous_id, previous_id, keyed.source_id)


def test_segment_batches_from_the_background_thread_gzip_and_all(
    pipeline: Pipeline, keyed: KeyedSource
) -> None:
    errors: list[Exception] = []
    client = segment_analytics.Client(
        keyed.key,
        host=pipeline.gateway_url,
        gzip=True,
        upload_size=25,
        on_error=lambda error, batch: errors.append(error),
        max_retries=0,
    )
    anonymous_id = _uid("anon")
    ids = [_uid("batched") for _ in range(60)]
    for n, message_id in enumerate(ids):
        client.track(None, "Scrolled", {"n": n}, anonymous_id=anonymous_id, message_id=message_id)
    client.shutdown()
    assert errors == []
    rows = _landed(pipeline, "type, properties->>'n', profile_id", ids)
    assert sorted(int(rows[i][1]) for i in ids) == list(range(60))
    assert {rows[i][2] for i in ids} == {anonymous_id}


def test_segment_retry_of_the_same_message_is_stored_once(
    pipeline: Pipeline, keyed: KeyedSource
) -> None:
    message_id, anonymous_id = _uid("retried"), _uid("anon")
    message = {"type": "track", "event": "Paid", "anonymousId": anonymous_id}
    body: dict[str, Any] = {"batch": [{**message, "messageId": message_id}], "writeKey": keyed.key}
    for _ in range(2):
        response = httpx.post(f"{pipeline.gateway_url}/v1/batch", json=body, timeout=10)
        assert response.status_code == 200, response.text
    marker = _uid("marker")
    body["batch"] = [{**message, "messageId": marker}]
    assert httpx.post(f"{pipeline.gateway_url}/v1/batch", json=body, timeout=10).status_code == 200
    _landed(pipeline, "type", [marker])  # after both copies, on the same partition
    with psycopg.connect(pipeline.database_url) as conn:
        count = conn.execute("SELECT count(*) FROM events WHERE id = %s", (message_id,)).fetchone()
    assert count == (1,)


# --------------------------------------------------------------------------------------------
# Snowplow
# --------------------------------------------------------------------------------------------

CHECKOUT = "iglu:com.acme/checkout/jsonschema/1-0-0"
USER_CONTEXT = "iglu:com.acme/user/jsonschema/1-0-0"


@pytest.mark.parametrize(("method", "encode_base64"), [("post", True), ("get", False)])
def test_snowplow_tracker_events_land(pipeline: Pipeline, method: str, encode_base64: bool) -> None:
    failures: list[Any] = []
    emitter = Emitter(
        pipeline.gateway_url,
        method=method,  # type: ignore[arg-type]
        batch_size=10,
        on_failure=lambda sent, failed: failures.append(failed),
    )
    duid, user_id = _uid("duid"), _uid("user")
    subject = Subject().set_user_id(user_id).set_domain_user_id(duid)
    tracker = Tracker(
        "trackflow-test",
        emitter,
        subject=subject,
        app_id=pipeline.source_id,
        encode_base64=encode_base64,
    )
    context = [SelfDescribingJson(USER_CONTEXT, {"tier": "gold"})]
    page = tracker.track(PageView("https://shop.example/p/1", "Product 1", "https://ref.example/"))
    structured = tracker.track(
        StructuredEvent("shop", "add-to-basket", "sku-1", "size", 2, context=context)
    )
    described = tracker.track(
        SelfDescribing(SelfDescribingJson(CHECKOUT, {"total": 9.5}), context=context)
    )
    tracker.flush()
    assert failures == []
    ids = [page, structured, described]
    assert all(isinstance(i, str) for i in ids)
    rows = _landed(
        pipeline,
        "type, profile_id, protocol, properties, context->>'user_id',"
        " context->'snowplow'->'contexts', context->'snowplow'->>'aid'",
        ids,  # type: ignore[arg-type]
    )
    pv, se, ue = (rows[i] for i in ids)  # type: ignore[index]
    assert pv[:3] == ("page_view", duid, "snowplow")
    assert pv[3] == {"url": "https://shop.example/p/1", "title": "Product 1",
                     "referrer": "https://ref.example/"}  # fmt: skip
    assert se[0] == "add-to-basket"
    assert se[3] == {"category": "shop", "action": "add-to-basket", "label": "sku-1",
                     "property": "size", "value": 2.0}  # fmt: skip
    assert ue[0] == "checkout" and ue[3] == {"total": 9.5}
    for row in (pv, se, ue):
        assert row[4] == user_id and row[6] == pipeline.source_id
    assert se[5] == ue[5] == [{"schema": USER_CONTEXT, "data": {"tier": "gold"}}]


# --------------------------------------------------------------------------------------------
# batches with some bad items, and webhooks
# --------------------------------------------------------------------------------------------


def test_batches_with_bad_items_store_the_good_ones_and_report_the_bad(
    pipeline: Pipeline, keyed: KeyedSource
) -> None:
    good = [_uid("good") for _ in range(3)]
    segment = httpx.post(
        f"{pipeline.gateway_url}/v1/batch",
        json={
            "writeKey": keyed.key,
            "batch": [
                {"type": "track", "anonymousId": "a"},
                {"type": "track", "event": "ok", "anonymousId": "a", "messageId": good[0]},
            ],
        },
        timeout=10,
    )
    snowplow = httpx.post(
        f"{pipeline.gateway_url}/com.snowplowanalytics.snowplow/tp2",
        json={"data": [{"e": "pv", "aid": pipeline.source_id, "eid": good[1]}, {"e": "pv"}]},
        timeout=10,
    )
    tracardi = httpx.post(
        f"{pipeline.gateway_url}/track",
        json={
            "source": {"id": pipeline.source_id},
            "events": [{"type": ""}, {"type": "ok", "id": good[2]}],
        },
        timeout=10,
    )
    for response, index in ((segment, 0), (snowplow, 1), (tracardi, 0)):
        assert response.status_code == 200, response.text
        [rejected] = response.json()["rejected"]
        assert rejected["index"] == index and rejected["message"]
    assert segment.json()["rejected"][0]["message"].startswith("batch.0.event: required")
    assert snowplow.json()["rejected"][0]["message"].startswith("data.1.aid: required")
    assert tracardi.json()["rejected"][0]["message"].startswith("events.0.type:")
    rows = _landed(pipeline, "protocol", good)
    assert [rows[i][0] for i in good] == ["segment", "snowplow", "tracardi"]
    all_bad = httpx.post(
        f"{pipeline.gateway_url}/v1/batch",
        json={"writeKey": keyed.key, "batch": [{"type": "track"}, {"type": "nope"}]},
        timeout=10,
    )
    assert all_bad.status_code == 400
    assert [d["index"] for d in all_bad.json()["error"]["details"]] == [0, 1]


def test_collect_webhooks_land_without_a_profile(pipeline: Pipeline) -> None:
    get = httpx.get(
        f"{pipeline.gateway_url}/collect/payment-received/{pipeline.source_id}",
        params={"amount": "10"},
        timeout=10,
    )
    post = httpx.post(
        f"{pipeline.gateway_url}/collect/refund/{pipeline.source_id}",
        json={"amount": 3, "reason": "damaged"},
        timeout=10,
    )
    ids = []
    for response in (get, post):
        assert response.status_code == 200, response.text
        assert response.json()["profile"] is None
        ids += response.json()["events"]
    rows = _landed(pipeline, "type, protocol, properties, options", ids)
    assert rows[ids[0]] == ("payment-received", "collect", {"amount": "10"}, {"profile_less": True})
    assert rows[ids[1]][:3] == ("refund", "collect", {"amount": 3, "reason": "damaged"})


def test_profile_less_events_are_stored_as_events_only(pipeline: Pipeline) -> None:
    """``?profile_less=true`` and ``/collect``: the row has no profile id, and the id the
    gateway keyed the event by on Kafka gets no profile, session, identifier or state."""
    session = _uid("pl-session")
    body = {
        "source": {"id": pipeline.source_id},
        "session": {"id": session},
        "context": {"traits": {"email": f"{_uid('pl')}@example.com"}},
        "events": [{"type": "identify"}, {"type": "page-view"}],
    }
    tracked = httpx.post(f"{pipeline.gateway_url}/track?profile_less=true", json=body, timeout=10)
    collected = httpx.post(
        f"{pipeline.gateway_url}/collect/ping/{pipeline.source_id}", json={"n": 1}, timeout=10
    )
    ids = []
    for response in (tracked, collected):
        assert response.status_code == 200, response.text
        assert response.json()["profile"] is None
        ids += response.json()["events"]
    rows = _landed(pipeline, "profile_id, session_id", ids)
    assert [rows[i][0] for i in ids] == [None, None, None]
    assert rows[ids[0]][1] == session
    keys = asyncio.run(_raw_keys(pipeline.kafka, set(ids)))
    assert len(keys) == 2  # one per request
    with psycopg.connect(pipeline.database_url) as conn:
        for table, column in (
            ("profiles", "id"),
            ("identify_state", "profile_id"),
            ("identifiers", "profile_id"),
            ("sessions", "profile_id"),
        ):
            found = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)", (sorted(keys),)
            ).fetchone()
            assert found == (0,), f"{table} has rows for a profile-less event's key"
        sessions = conn.execute("SELECT count(*) FROM sessions WHERE id = %s", (session,))
        assert sessions.fetchone() == (0,)


async def _raw_keys(bootstrap: str, event_ids: set[str]) -> set[str]:
    """The Kafka keys (profile ids) of these events on the raw topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, [EVENTS_RAW])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        keys: set[str] = set()
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:  # other tests leave poison messages here too
                    with contextlib.suppress(orjson.JSONDecodeError):
                        value = orjson.loads(record.value or b"null")
                        if isinstance(value, dict) and value.get("id") in event_ids:
                            keys.add((record.key or b"").decode())
        return keys
    finally:
        await consumer.stop()
