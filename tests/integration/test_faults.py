"""Faults on the real stack: every acknowledged event stored exactly once, whatever breaks.

Each test owns a Kafka broker, a PostgreSQL cluster, a gateway and a worker (started ahead
of time by a module pool, closed by the test), sends a known set of events, breaks one
thing, repairs it, waits for the pipeline to drain and checks conservation (see
``faults.conservation``). The table of results is printed at the end of the module and
written to ``.trackflow/fault-report.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError
from click.testing import CliRunner, Result

from processors.postgres import PostgresStore
from processors.retry import retry_while_retriable
from processors.store import EventRow, Located, plan_event_rows
from schemas import RawEvent
from schemas.topics import EVENTS_ENRICHED, EVENTS_FAILED, EVENTS_RAW
from tests.integration.faults import (
    Load,
    Report,
    Stack,
    StackPool,
    acked_seqs,
    committed_offsets,
    conservation,
    end_offsets,
    http_conservation,
    metric_value,
    plan_requests,
    produce,
    running,
    stored_count,
    summarise,
    timed,
    wait_drained,
)
from tests.integration.harness import cli, poll
from trackflow.cli import main as cli_main

T = TypeVar("T")


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    collected = Report()
    yield collected
    text = collected.write()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    quiet = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with quiet:
        print("\n\n" + text)


@pytest.fixture(scope="module")
def pool(request: pytest.FixtureRequest) -> Iterator[StackPool]:
    """One stack per selected test of this module, started ahead of time."""
    wanted = sum(
        1
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and "stack" in getattr(item, "fixturenames", ())
    )
    stacks = StackPool(wanted)
    yield stacks
    stacks.close()


@pytest.fixture
def stack(pool: StackPool, request: pytest.FixtureRequest) -> Iterator[Stack]:
    own = pool.take(request.node.name.removeprefix("test_")[:40])
    try:
        yield own
    finally:
        own.close()


STORE_INPUT = EVENTS_ENRICHED  # the topic the store stage consumes (processors/app.py)
# the inputs of the stages that need PostgreSQL (identify reads its state there, store writes)
DATABASE_INPUTS = (EVENTS_RAW, EVENTS_ENRICHED)
PUBLISH_TIMEOUT = 2.0  # TRACKFLOW_PUBLISH_TIMEOUT_SECONDS of every stack
RETRY_AFTER = "3"


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_postgres_down_30s_holds_offsets_and_loses_nothing(stack: Stack, report: Report) -> None:
    with timed(stack.name) as clock:
        stack.start()
        clock.step("gateway and worker ready")
        requests = plan_requests("pg", 300)
        before = Load(stack.gateway_url, requests[:80], concurrency=8).start().join()
        wait_drained(stack, acked_seqs(before))
        committed = committed_offsets(stack.kafka, stack.group, STORE_INPUT)

        clock.step("first events stored")
        stack.cluster.kill()
        down_at = time.monotonic()
        clock.step("PostgreSQL SIGKILLed")
        during = Load(stack.gateway_url, requests[80:], concurrency=8, rate=10).start()
        worker_ready = f"{stack.worker_url}/readyz"
        poll(lambda: _status(worker_ready) == 503, 20, "worker /readyz 503")
        unready = httpx.get(worker_ready, timeout=10).json()
        outage = during.join()
        time.sleep(max(0.0, down_at + 30 - time.monotonic()))  # the fault lasts ~30 s
        held = committed_offsets(stack.kafka, stack.group, STORE_INPUT)
        waiting = sum(
            sum(end_offsets(stack.kafka, topic).values())
            - sum(committed_offsets(stack.kafka, stack.group, topic).values())
            for topic in DATABASE_INPUTS
        )
        clock.step("starting PostgreSQL again")
        stack.cluster.start()
        stack.cluster.wait_ready()
        back_at = time.monotonic()
        clock.step(f"PostgreSQL ready: down {back_at - down_at:.0f} s")
        outcomes = [*before, *outage]
        wait_drained(stack, acked_seqs(outcomes))
        clock.step("drained")
        # identify (its state) and store (the rows) wait for PostgreSQL, retrying with backoff
        retries = stack.log_tail(200_000).count(" failed (attempt ")
        result = http_conservation(
            stack,
            f"PostgreSQL SIGKILLed, down {back_at - down_at:.0f} s, started again",
            outcomes,
            notes=f"{summarise(outcomes)}; {waiting} messages waited uncommitted on the "
            "inputs of identify and store; "
            f"{retries} retries logged by the stages; drained {time.monotonic() - back_at:.0f} s "
            "after PostgreSQL was back",
        )
    report.add(result, clock())
    result.check()
    assert all(o.acked for o in outcomes), summarise(outcomes)
    assert held == committed, "offsets were committed while PostgreSQL was down"
    assert waiting > 0
    assert any("postgresql" in reason for reason in unready["reasons"]), unready
    assert retries > 0, "no stage retried"
    assert running(stack.worker), "the worker died"


def test_kafka_broker_down_20s_gives_503_then_recovers_by_itself(
    stack: Stack, report: Report
) -> None:
    with timed(stack.name) as clock:
        stack.start()
        clock.step("gateway and worker ready")
        requests = plan_requests("kafka", 460)
        load = Load(
            stack.gateway_url,
            requests[:400],
            concurrency=40,
            rate=12,
            timeout=PUBLISH_TIMEOUT + 2,  # a request that hangs longer fails the test
            deadline=60,
        ).start()
        load.wait_done(40)
        stack.broker.kill()
        down_at = time.monotonic()
        clock.step("broker SIGKILLed")
        poll(lambda: _status(f"{stack.gateway_url}/readyz") == 503, 15, "gateway /readyz 503")
        unready = httpx.get(f"{stack.gateway_url}/readyz", timeout=5).json()
        # Down ~20 s in all: a SIGKILLed broker takes 12-20 s on two cores to start again.
        time.sleep(max(0.0, down_at + 5 - time.monotonic()))
        up_at = time.monotonic()
        clock.step("starting the broker again")
        stack.broker.start()
        stack.broker.wait_ready()
        outage = time.monotonic() - down_at
        clock.step(f"broker ready: down {outage:.0f} s")
        poll(lambda: _status(f"{stack.gateway_url}/readyz") == 200, 60, "gateway ready again")
        clock.step("gateway ready")
        outcomes = load.join()
        after = Load(stack.gateway_url, requests[400:], concurrency=8, rate=40).start().join()
        everything = [*outcomes, *after]
        clock.step(f"load done: {summarise(everything)}")
        wait_drained(stack, acked_seqs(everything))
        clock.step("drained")
        during = [
            a for o in outcomes for a in o.attempts if down_at < a.started < a.finished < up_at
        ]
        refused = [
            e.seq for o in outcomes if not o.acked and o.attempts[0].started > down_at
            for e in o.request.events
        ]  # fmt: skip
        result = http_conservation(
            stack,
            f"Kafka broker SIGKILLed, down {outage:.0f} s under load, started again",
            everything,
            notes=f"{summarise(everything)}; {len(during)} requests while down, slowest "
            f"{max((a.seconds for a in during), default=0):.1f} s; "
            f"{stored_count(stack, refused)} of {len(refused)} events answered 503 "
            "after the kill were stored after all",
        )
    report.add(result, clock())
    result.check()
    assert during, "no request was sent while the broker was down"
    assert all(a.status == 503 and a.retry_after == RETRY_AFTER for a in during), {
        (a.status, a.error, a.retry_after) for a in during
    }
    assert max(a.seconds for a in during) < PUBLISH_TIMEOUT + 1
    hung = [a for o in everything for a in o.attempts if a.error == "ReadTimeout"]
    assert not hung, f"{len(hung)} requests hung past the publish timeout + 2 s"
    assert any("kafka" in reason for reason in unready["reasons"]), unready
    assert all(o.acked for o in after), summarise(after)
    assert running(stack.gateway) and running(stack.worker), "a process died"


def test_worker_sigkilled_mid_batch_replays_without_doubling(stack: Stack, report: Report) -> None:
    with timed(stack.name) as clock:
        stack.start(TRACKFLOW_STORE_BATCH_SIZE="1000", TRACKFLOW_STORE_BATCH_SECONDS="0.5")
        clock.step("gateway and worker ready")
        assert stack.worker is not None
        requests = plan_requests("wkill", 400)
        seqs = [e.seq for r in requests for e in r.events]
        load = Load(stack.gateway_url, requests, concurrency=8, rate=40, attempts=3).start()
        # Kill right after a batch's database commit: its offsets are committed up to a
        # second later, so the restarted worker must replay them without doubling.
        poll(lambda: stored_count(stack, seqs) >= 150, 60, "150 events stored", 0.01)
        stack.worker.kill()
        clock.step("150 events stored; worker SIGKILLed")
        load.wait_done(300)  # events keep coming while no worker runs
        down = stored_count(stack, seqs)
        stack.worker.start()
        clock.step(f"worker restarted ({down} events were stored)")
        outcomes = load.join()
        wait_drained(stack, acked_seqs(outcomes))
        clock.step("drained")
        replayed = metric_value(
            stack.worker_url, "trackflow_stage_events_total", stage="store", outcome="duplicate"
        )
        result = http_conservation(
            stack,
            "worker SIGKILL mid-batch, restarted",
            outcomes,
            notes=f"{summarise(outcomes)}; stored at kill {down}; replayed as duplicates "
            f"after restart: {replayed:.0f}",
        )
    report.add(result, clock())
    result.check()
    assert all(o.acked for o in outcomes), summarise(outcomes)
    assert result.stored > down, "nothing was stored after the restart"


def test_gateway_sigkilled_under_load_loses_nothing(stack: Stack, report: Report) -> None:
    with timed(stack.name) as clock:
        stack.start()
        clock.step("gateway and worker ready")
        assert stack.gateway is not None
        requests = plan_requests("gwkill", 300)
        load = Load(
            stack.gateway_url, requests, concurrency=16, rate=40, attempts=30, retry_delay=0.5
        ).start()
        load.wait_done(80)
        clock.step("80 requests answered; SIGKILL the gateway")
        stack.gateway.kill()
        stack.gateway.start()
        clock.step("gateway restarted")
        outcomes = load.join()
        clock.step(f"load done: {summarise(outcomes)}")
        wait_drained(stack, acked_seqs(outcomes))
        clock.step("drained")
        result = http_conservation(
            stack, "gateway SIGKILL under load, restarted", outcomes, notes=summarise(outcomes)
        )
    report.add(result, clock())
    result.check()
    refused = [a for o in outcomes for a in o.attempts if a.status is None]
    assert refused, "the kill hit no request: the load ended before it"
    assert all(o.acked for o in outcomes if o.request.has_ids), "a retried request never got 2xx"


def _raw_event(run: str, seq: int, **overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "v": 1,
        "id": f"{run}-e{seq}",
        "type": "fault-test",
        "source_id": "backend",
        "profile_id": f"{run}-profile",
        "session_id": f"{run}-session",
        "received_at": datetime.now(UTC).isoformat(),
        "properties": {"run": run, "seq": f"{run}-{seq}"},
    }
    return {**event, **overrides}


def _broker_max_message_bytes(bootstrap: str) -> int:
    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, EVENTS_RAW)]
            )
            entries = response.resources[0][4]
            return int(next(e[1] for e in entries if e[0] == "max.message.bytes"))
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_poison_messages_land_in_failed_events_and_the_partition_flows_on(
    stack: Stack, report: Report
) -> None:
    with timed(stack.name) as clock:
        stack.start(gateway=False)
        clock.step("gateway and worker ready")
        run, key = "poison", b"poison-profile"  # one key: one partition, in this order
        limit = _broker_max_message_bytes(stack.kafka)
        poison = {
            "invalid JSON": (b'{"v": 1, "id": "cut-off', "invalid JSON"),
            "not an object": (b"[1, 2, 3]", "expected a JSON object, got list"),
            "empty message": (b"", "empty message"),
            "wrong schema": (
                orjson.dumps({"v": 1, "hello": "world"}),
                "id: Field required",
            ),
            "wrong types": (
                orjson.dumps(_raw_event(run, 1001, id=5, tags="x", received_at="yesterday")),
                "id: Input should be a valid string",
            ),
            "unknown envelope version": (
                orjson.dumps(_raw_event(run, 1002, v=2)),
                "unsupported envelope version 2 (supported: 1)",
            ),
            "NUL in properties (PostgreSQL refuses)": (
                orjson.dumps(_raw_event(run, 1003, properties={"run": run, "x": "a\x00b"})),
                "properties contains a NUL character",
            ),
        }
        huge = b'{"v": 1, "junk": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        valid = [_raw_event(run, i) for i in range(1, 41)]
        # A refused message leaves an idempotent producer's sequence numbers out of order,
        # so the 5 MB one has a producer of its own (the order on the partition is kept).
        first = asyncio.run(produce(stack.kafka, [(key, value) for value, _ in poison.values()]))
        [huge_error] = asyncio.run(produce(stack.kafka, [(key, huge)]))
        then = asyncio.run(produce(stack.kafka, [(key, orjson.dumps(v)) for v in valid]))
        assert first + then == [None] * (len(poison) + len(valid)), first + then
        sent = {str(v["properties"]["seq"]): str(v["id"]) for v in valid}  # type: ignore[index]
        clock.step("produced")
        wait_drained(stack, list(sent))
        clock.step("drained")
        # Failed by the stage that met them first: raw-topic ones by enrich, the NUL by store.
        failures = [reason for (reason,) in stack.query("SELECT reason FROM failed_events")]
        refused = (
            f"{type(huge_error).__name__} (broker limit {limit} bytes)"
            if huge_error is not None
            else "accepted"
        )
        result = conservation(
            stack,
            "poison messages on the raw topic, valid events behind them",
            sent,
            sent,
            failed=len(failures),
            notes=f"{len(poison)} poison + 1 of 5 MB: {refused}",
        )
        if huge_error is None:
            result.acknowledged += 1
        result.sent += len(poison) + 1
        result.acknowledged += len(poison)
        expected = [reason for _, reason in poison.values()]
        if huge_error is None:
            expected.append("Field required")
        unmatched, missing = list(failures), []
        for wanted in expected:
            found = next((reason for reason in unmatched if wanted in reason), None)
            if found is None:
                missing.append(wanted)
            else:
                unmatched.remove(found)
        result.lost += len(missing)
    report.add(result, clock())
    result.check()
    assert not missing and not unmatched, f"no record for {missing}; unexpected {unmatched}"
    assert isinstance(huge_error, MessageSizeTooLargeError) or huge_error is None, huge_error
    assert running(stack.worker)


def _snapshot(stack: Stack) -> tuple[object, ...]:
    return (
        stack.query("SELECT count(*), count(DISTINCT properties->>'seq') FROM events"),
        stack.query("SELECT id, event_count FROM profiles ORDER BY id"),
        stack.query("SELECT id, event_count FROM sessions ORDER BY id"),
        stack.query("SELECT count(*) FROM failed_events"),
    )


def test_events_delivered_twice_and_replayed_from_offset_0_are_stored_once(
    stack: Stack, report: Report
) -> None:
    with timed(stack.name) as clock:
        stack.start()
        clock.step("gateway and worker ready")
        requests = plan_requests("dup", 150, idless_every=0)
        first = Load(stack.gateway_url, requests, concurrency=8).start().join()
        again = Load(stack.gateway_url, requests, concurrency=8).start().join()  # same ids
        idless = plan_requests("dup-noid", 10, idless_every=1, seed=3)
        once = Load(stack.gateway_url, idless, concurrency=4).start().join()
        asyncio.run(produce(stack.kafka, [(b"dup-poison", b"{oops"), (None, b"[]")]))
        outcomes = [*first, *again, *once]
        clock.step("sent twice")
        wait_drained(stack, acked_seqs(outcomes))
        before = _snapshot(stack)
        clock.step("drained")

        replay_group = f"{stack.group}-replay"
        _replayer, replay_url = stack.extra_worker(replay_group)
        clock.step("replaying worker started")
        wait_drained(stack, group=replay_group)
        clock.step("replay drained")
        replayed = metric_value(
            replay_url, "trackflow_stage_events_total", stage="store", outcome="duplicate"
        )
        messages = sum(len(o.request.events) for o in outcomes if o.acked)
        result = http_conservation(
            stack,
            "same events sent twice by the client + raw topic replayed from offset 0",
            outcomes,
            notes=f"{summarise(outcomes)}; a second consumer group read every topic from "
            f"offset 0: its store stage found {replayed:.0f} copies of the {messages} "
            "acknowledged events already stored",
        )
        result.failed = len(stack.query("SELECT 1 FROM failed_events"))
    report.add(result, clock())
    result.check()
    assert all(o.acked for o in outcomes), summarise(outcomes)
    assert _snapshot(stack) == before
    assert replayed >= messages  # every stage of the new group replays (enrich re-emits too)
    assert result.failed == 2


# --------------------------------------------------------------------------------------------
# trackflow failed list | replay
# --------------------------------------------------------------------------------------------


def _trackflow(stack: Stack, *args: str) -> Result:
    """The ``trackflow`` command in this process (a subprocess costs ~2 s of start-up)."""
    env = {"TRACKFLOW_DATABASE_URL": stack.database_url, "TRACKFLOW_KAFKA_BOOTSTRAP": stack.kafka}
    return CliRunner().invoke(cli_main, list(args), env=env, catch_exceptions=False)


def _record_failure(stack: Stack, payload: bytes, reason: str, offset: int, **row: object) -> None:
    """A failed_events row as an older, defective worker would have recorded it."""
    fields = {"stage": "store", "topic": EVENTS_RAW, "event_id": None, **row}
    stack.execute(
        "INSERT INTO failed_events (stage, reason, topic, kafka_partition, kafka_offset,"
        " event_id, failed_at, payload) VALUES (%s, %s, %s, 0, %s, %s, now(), %s)",
        fields["stage"], reason, fields["topic"], 1_000_000 + offset, fields["event_id"],
        payload.decode(),
    )  # fmt: skip


def test_failed_events_are_listed_and_replayed_once_after_a_fix(stack: Stack) -> None:
    stack.start(gateway=False)
    # First without failed_events.replayed_at (the schema before the proposed migration).
    stack.execute("ALTER TABLE failed_events DROP COLUMN IF EXISTS replayed_at")
    run = "replay"
    # Refused by defects fixed since: one by the enrich stage, one by the store stage.
    raw, enriched = _raw_event(run, 1), {**_raw_event(run, 2, session_id=None), "enrichment": {}}
    fixed = "(a defect fixed since)"
    _record_failure(stack, orjson.dumps(raw), f"enrich crashed {fixed}", 0,
                    stage="enrich", event_id=raw["id"])  # fmt: skip
    _record_failure(stack, orjson.dumps(enriched), f"postgresql rejected the rows {fixed}", 1,
                    topic=EVENTS_ENRICHED, event_id=enriched["id"])  # fmt: skip
    # Still refused by the code that runs now, or not an event at all.
    still_bad = orjson.dumps(_raw_event(run, 3, v=99))
    _record_failure(stack, still_bad, "unsupported envelope version 99 (supported: 1)", 2,
                    stage="enrich")  # fmt: skip
    _record_failure(stack, b"{}", "unreadable failed-event record", 3, topic=EVENTS_FAILED)
    asyncio.run(produce(stack.kafka, [(b"replay-profile", b"{broken")]))  # a real failure
    wait_drained(stack)
    seqs = [str(e["properties"]["seq"]) for e in (raw, enriched)]  # type: ignore[index]

    listed = _trackflow(stack, "failed", "list", "--limit", "10")
    assert listed.exit_code == 0, listed.output
    assert "unsupported envelope version 99" in listed.output and "invalid JSON" in listed.output
    assert listed.output.rstrip().endswith("5 of 5 failed events shown")
    store = _trackflow(stack, "failed", "list", "--stage", "store", "--limit", "1")
    assert store.output.rstrip().endswith("1 of 2 failed events shown"), store.output
    assert "unreadable failed-event record" in store.output  # the newest of the two
    later = _trackflow(stack, "failed", "list", "--since", "2999-01-01")
    assert later.output.rstrip().endswith("0 of 0 failed events shown")

    ends = [end_offsets(stack.kafka, topic) for topic in (EVENTS_RAW, EVENTS_ENRICHED)]
    dry = _trackflow(stack, "failed", "replay", "--dry-run")
    assert dry.output.rstrip().endswith("dry run: would replay 2, skipped 2"), dry.output
    assert "skipped: still invalid: unsupported envelope version 99" in dry.output
    assert [end_offsets(stack.kafka, t) for t in (EVENTS_RAW, EVENTS_ENRICHED)] == ends

    for _ in range(2):  # without a replayed_at column the idempotent store is the guard
        replayed = _trackflow(stack, "failed", "replay")
        assert replayed.output.rstrip().endswith("replayed 2, skipped 2"), replayed.output
        lines = [line.split() for line in replayed.output.splitlines()]
        # back to the topic each failed on, keyed by profile id as the gateway keys events
        assert [line[1:4] for line in lines if line[-1] == "replayed"] == [
            [EVENTS_RAW, raw["id"], "replay-profile"],
            [EVENTS_ENRICHED, enriched["id"], "replay-profile"],
        ]
        wait_drained(stack, seqs)
        result = conservation(stack, "failed replay", dict.fromkeys(seqs), dict.fromkeys(seqs))
        result.check()
        assert result.stored == 2
    assert stack.query("SELECT event_count FROM profiles") == [(2,)]

    # With the replayed_at column (the proposed migration) a second replay skips them.
    stack.execute("ALTER TABLE failed_events ADD COLUMN IF NOT EXISTS replayed_at timestamptz")
    assert _trackflow(stack, "failed", "replay").output.rstrip().endswith("replayed 2, skipped 2")
    again = _trackflow(stack, "failed", "replay")
    assert again.output.rstrip().endswith("replayed 0, skipped 4"), again.output
    assert again.output.count("skipped: already replayed at") == 2
    marked = stack.query("SELECT count(*) FROM failed_events WHERE replayed_at IS NOT NULL")
    assert marked == [(2,)]

    bad_since = _trackflow(stack, "failed", "list", "--since", "yesterday")
    assert bad_since.exit_code == 2 and "'yesterday' is not an ISO-8601" in bad_since.output
    unreachable = cli("failed", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/x")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("trackflow: error: cannot read failed events")


# --------------------------------------------------------------------------------------------
# defects found by the fault runs: each fails until the product is fixed
# --------------------------------------------------------------------------------------------


def test_single_poison_messages_do_not_stop_the_worker(stack: Stack) -> None:
    """Two messages a backend may well produce, each of which makes a stage raise instead of
    recording a failed event. In the enrich agent, Faust logs "Crashed" and restarts the
    agent, but the crashed batch is neither processed nor acknowledged: the event behind the
    poison is not stored, the partition's committed offset never passes the poison again,
    and every worker restart replays from there and crashes again. In the store agent the
    same errors stop the worker (``app.crash``), and every restart crashes again.

    - properties nested 300 deep: orjson reads 1,024 levels but writes only 254, and its
      ``TypeError`` is neither an ``InvalidMessage`` nor a ``StageError``;
    - 200 KB of control characters: a fifth of the broker's limit, but the failed-event
      record escapes each byte as ``\\u0001`` (1.2 MB), over the producer's 1 MB limit.
    """
    stack.start(gateway=False)
    key = b"crashing-poison"
    deep = _raw_event("crash", 1, properties={"v": _nested(300)})
    valid = _raw_event("crash", 2)
    deep_json = json.dumps(deep).encode()  # orjson itself refuses to write it
    messages = [(key, deep_json), (key, b"\x01" * 200_000), (key, orjson.dumps(valid))]
    assert asyncio.run(produce(stack.kafka, messages)) == [None, None, None]

    def flowed_on() -> bool:
        crashed = "Crashed reason=" in stack.log_tail(1_000_000)  # Faust: an agent died
        assert running(stack.worker) and not crashed, (
            "a stage crashed on a message it should have recorded as failed:\n"
            + stack.log_tail(3000)
        )
        return bool(stack.query("SELECT 1 FROM events WHERE id = %s", valid["id"]))

    try:
        poll(flowed_on, 30, "the event behind the poison messages", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.log_tail(3000)}") from None
    reasons = stack.query("SELECT reason FROM failed_events ORDER BY kafka_offset")
    assert len(reasons) == 2, reasons
    assert reasons[1][0].startswith("invalid JSON")


def _nested(depth: int) -> object:
    value: object = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


class _LoopThread:
    """An event loop in a thread of its own, so the test thread can break things meanwhile."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def _event_rows(event_id: str) -> list[EventRow]:
    event = RawEvent.model_validate(_raw_event("reconnect", 0, id=event_id))
    rows, rejected = plan_event_rows([Located(event, 0, 0)])
    assert not rejected
    return rows


def test_the_store_reconnects_within_its_retry_cap_after_postgres_returns(stack: Stack) -> None:
    """``PostgresStore`` after an outage: the first write PostgreSQL can take succeeds within
    the store's retry cap, not when the connection pool's own reconnect backoff next wakes up.

    The pool retries a lost connection 1, 3, 7, 15, 31, 63 ... s after the loss (the first
    delay jittered by 10%); PostgreSQL is back 18-21 s after the loss, so the pool's next
    attempt is 7-16 s away, while the store retries every second."""
    runner = _LoopThread()
    store = PostgresStore(stack.database_url)
    try:
        runner.submit(store.start()).result(30)
        runner.submit(store.write_events(_event_rows("before"))).result(30)
        stack.cluster.kill()
        pending = runner.submit(
            retry_while_retriable(
                lambda: store.write_events(_event_rows("after")), "probe write", cap=1.0
            )
        )
        time.sleep(17.5)  # the outage
        stack.cluster.start()
        stack.cluster.wait_ready()
        back_at = time.monotonic()
        assert pending.result(90) == 1
        recovered = time.monotonic() - back_at
    finally:
        with contextlib.suppress(Exception):
            runner.submit(store.stop()).result(10)
        runner.close()
    assert recovered < 5, (
        f"the first write succeeded {recovered:.1f} s after PostgreSQL was back; the store's "
        "retry cap is 1 s"
    )
