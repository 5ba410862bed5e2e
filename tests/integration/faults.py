"""Fault injection on the real stack: one broker, database, gateway and worker per test, a
bounded HTTP load, the drain wait, the conservation check and the report table.

    StackPool ── starts each test's Kafka broker + PostgreSQL ahead of time, in the background
    Stack     ── one test's services and its own gateway and worker processes
    plan_requests / Load ── a known set of events sent with bounded concurrency, rate,
                            attempts and time; every attempt's outcome is recorded
    wait_drained ── the worker's consumer group has committed every offset (so every
                    message is stored or recorded as failed) and the rows stop changing
    conservation ── acknowledged events stored exactly once, nothing doubled, counters
                    of profiles and sessions equal to the stored rows
    Report    ── one row per fault, printed and written to .trackflow/fault-report.md

Every event carries ``properties.run`` (one per test) and ``properties.seq`` (one per
logical event), so copies of one event are found even when the gateway gave them
different ids (events sent without a client-chosen id).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.migrate import apply_migrations
from schemas.topics import ALL_TOPICS, EVENTS_RAW
from tests.integration.harness import (
    REPO,
    Services,
    TrackflowProcess,
    cli,
    local_services,
    poll,
)
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import KafkaBroker, PostgresCluster, free_port

__all__ = [
    "PIPELINE_TOPICS",
    "Attempt",
    "Clock",
    "Conservation",
    "Load",
    "Outcome",
    "PlannedEvent",
    "PlannedRequest",
    "Report",
    "Stack",
    "StackPool",
    "acked_seqs",
    "committed_offsets",
    "conservation",
    "end_offsets",
    "http_conservation",
    "lag",
    "metric_value",
    "open_stack",
    "plan_requests",
    "produce",
    "running",
    "stored_count",
    "summarise",
    "timed",
    "wait_drained",
]

SOURCE_ID = "fault-site"
PARTITIONS = 3
REPORT_PATH = REPO / ".trackflow" / "fault-report.md"

# Faust reads these without a prefix. Its 60 s default session timeout keeps a SIGKILLed
# worker's partitions assigned to the dead member for a minute; 6 s is the broker's minimum.
FAST_REBALANCE = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


# --------------------------------------------------------------------------------------------
# stacks
# --------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One test's own Kafka broker and PostgreSQL, and its own gateway and worker."""

    name: str
    services: Services
    broker: KafkaBroker
    cluster: PostgresCluster
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    gateway: TrackflowProcess | None = None
    worker: TrackflowProcess | None = None
    gateway_url: str = ""
    worker_url: str = ""
    group: str = ""
    _close: Callable[[], None] = lambda: None
    _extra: list[TrackflowProcess] = field(default_factory=list)

    @property
    def kafka(self) -> str:
        return self.services.kafka

    @property
    def database_url(self) -> str:
        return self.services.database_url

    def start(self, *, gateway: bool = True, worker: bool = True, **env: str) -> None:
        """Start this test's gateway and worker (concurrently) with extra ``TRACKFLOW_*`` env."""
        gateway_port, worker_port = free_port(), free_port()
        self.group = f"trackflow-faults-{self.name}"
        self.env = {
            "TRACKFLOW_KAFKA_BOOTSTRAP": self.kafka,
            "TRACKFLOW_DATABASE_URL": self.database_url,
            "TRACKFLOW_GATEWAY_PORT": str(gateway_port),
            "TRACKFLOW_WORKER_PORT": str(worker_port),
            "TRACKFLOW_WORKER_ID": self.group,
            "TRACKFLOW_PUBLISH_TIMEOUT_SECONDS": "2",
            "TRACKFLOW_RETRY_AFTER_SECONDS": "3",
            "TRACKFLOW_STORE_BATCH_SECONDS": "0.1",
            "TRACKFLOW_STORE_RETRY_MAX_SECONDS": "2",
            **FAST_REBALANCE,
            **env,
        }
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.worker_url = f"http://127.0.0.1:{worker_port}"
        self.gateway = TrackflowProcess(
            "gateway", self.env, f"{self.gateway_url}/readyz", self.logs
        )
        self.worker = TrackflowProcess("worker", self.env, f"{self.worker_url}/readyz", self.logs)
        _concurrently(
            [p.start for p, wanted in ((self.gateway, gateway), (self.worker, worker)) if wanted]
        )

    def extra_worker(self, group: str) -> tuple[TrackflowProcess, str]:
        """A second worker against the same database, in consumer group ``group``."""
        port = free_port()
        env = {**self.env, "TRACKFLOW_WORKER_ID": group, "TRACKFLOW_WORKER_PORT": str(port)}
        logs = self.logs / group
        logs.mkdir()
        url = f"http://127.0.0.1:{port}"
        process = TrackflowProcess("worker", env, f"{url}/readyz", logs)
        self._extra.append(process)
        process.start()
        return process, url

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, *params: object) -> None:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            conn.execute(sql, params)

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.logs.rglob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """SIGKILL everything: the state is thrown away, and a graceful stop costs seconds."""
        for process in [*self._extra, self.gateway, self.worker]:
            if process is not None:
                with contextlib.suppress(Exception):
                    process.kill()
        with contextlib.suppress(Exception):
            self.broker.kill()
        with contextlib.suppress(Exception):
            self.cluster.kill()
        self._close()
        shutil.rmtree(self.logs, ignore_errors=True)


# Children ask the kernel for a signal when their parent *thread* ends (PR_SET_PDEATHSIG), so
# processes are started from threads that live as long as the test process.
_STARTERS = ThreadPoolExecutor(4, "fault-starter")


def _concurrently(calls: Sequence[Callable[[], None]]) -> None:
    for future in [_STARTERS.submit(call) for call in calls]:
        future.result()


def running(process: TrackflowProcess | None) -> bool:
    """Whether the child is alive (the harness keeps the process handle private)."""
    return process is not None and process._child.running


def open_stack(name: str) -> Stack:
    """Broker and database up, topics created, schema migrated, the test source registered
    (``SOURCE_ID``); the caller starts the gateway and worker with ``Stack.start``."""
    manager = local_services(f"faults-{name}")
    services, broker, cluster = manager.__enter__()
    try:
        asyncio.run(ensure_topics(services.kafka, partitions=PARTITIONS))
        apply_migrations(services.database_url)
        env = {"TRACKFLOW_KAFKA_BOOTSTRAP": services.kafka}
        added = cli("sources", "add", "Fault site", "--id", SOURCE_ID, env=env)
        assert added.returncode == 0, added.stderr
    except BaseException as exc:
        manager.__exit__(type(exc), exc, exc.__traceback__)
        raise
    logs = Path(tempfile.mkdtemp(prefix=f"trackflow-faults-{name}-logs-"))

    def close() -> None:
        manager.__exit__(None, None, None)

    return Stack(name, services, broker, cluster, logs, _close=close)


class StackPool:
    """Starts ``count`` stacks ahead of time, one after another in the background (a broker
    takes ~15 s of a 2-core machine to start), so that each test owns a stack but waits for
    none after the first. Each test closes its own.

    The pool's threads spawn the brokers and databases, so they must outlive every stack:
    ``close`` shuts them down only after the stacks are gone.
    """

    def __init__(self, count: int, parallel: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max(1, min(parallel, count)), "stack-pool")
        self._futures: list[Future[Stack]] = [
            self._executor.submit(open_stack, f"s{i}") for i in range(count)
        ]
        self._lock = threading.Lock()

    def take(self, name: str) -> Stack:
        with self._lock:
            if not self._futures:
                self._futures.append(self._executor.submit(open_stack, name))
            future = self._futures.pop(0)
        stack = future.result(timeout=300)
        stack.name = name
        return stack

    def close(self) -> None:
        with self._lock:
            left, self._futures = self._futures, []
        for future in left:
            with contextlib.suppress(BaseException):
                future.result(timeout=300).close()
        self._executor.shutdown(wait=True)


# --------------------------------------------------------------------------------------------
# the planned events and the load
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedEvent:
    seq: str
    id: str | None  # chosen by the client; None: the gateway assigns one
    profile_id: str
    session_id: str

    def body(self, run: str) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "fault-test", "properties": {"run": run, "seq": self.seq}}
        if self.id is not None:
            event["id"] = self.id
        return event


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    run: str
    profile_id: str
    session_id: str
    events: tuple[PlannedEvent, ...]

    @property
    def has_ids(self) -> bool:
        """Only requests whose events all carry ids may be retried without doubling."""
        return all(e.id is not None for e in self.events)

    def body(self, source_id: str = SOURCE_ID) -> dict[str, Any]:
        return {
            "source": {"id": source_id},
            "profile": {"id": self.profile_id},
            "session": {"id": self.session_id},
            "events": [e.body(self.run) for e in self.events],
        }


def plan_requests(
    run: str,
    count: int,
    *,
    profiles: int = 12,
    max_events: int = 3,
    idless_every: int = 10,
    seed: int = 7,
) -> list[PlannedRequest]:
    """``count`` requests of 1..max_events events over a few profiles (one session each);
    every ``idless_every``-th request carries events without ids."""
    rng = random.Random(seed)
    requests = []
    seq = 0
    for index in range(count):
        p = rng.randrange(profiles)
        profile_id, session_id = f"{run}-p{p}", f"{run}-p{p}-s"
        with_ids = idless_every <= 0 or index % idless_every != idless_every - 1
        events = []
        for _ in range(rng.randint(1, max_events)):
            seq += 1
            event_id = f"{run}-e{seq}" if with_ids else None
            events.append(PlannedEvent(f"{run}-{seq}", event_id, profile_id, session_id))
        requests.append(PlannedRequest(index, run, profile_id, session_id, tuple(events)))
    return requests


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    finished: float
    status: int | None  # None: no HTTP answer (see error)
    error: str | None  # exception class name: ConnectError, ReadTimeout, ...
    retry_after: str | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Outcome:
    request: PlannedRequest
    attempts: list[Attempt] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)  # from the 2xx answer

    @property
    def acked(self) -> bool:
        return any(a.ok for a in self.attempts)

    @property
    def sent(self) -> bool:
        return bool(self.attempts)


class Load:
    """Sends ``requests`` to ``POST /track`` from a background thread, bounded everywhere:
    at most ``concurrency`` in flight, ``rate`` request starts per second, ``attempts`` per
    request (retries only for requests whose events all have ids, after connection errors,
    timeouts and 503s), each attempt within ``timeout`` s, and nothing starts after
    ``deadline`` s."""

    def __init__(
        self,
        base_url: str,
        requests: Sequence[PlannedRequest],
        *,
        concurrency: int = 16,
        rate: float = 50.0,
        timeout: float = 10.0,
        attempts: int = 1,
        retry_delay: float = 0.5,
        deadline: float = 90.0,
    ) -> None:
        assert attempts >= 1 and concurrency >= 1 and rate > 0
        self._url = f"{base_url}/track"
        self.outcomes = [Outcome(r) for r in requests]
        self._concurrency = concurrency
        self._rate = rate
        self._timeout = timeout
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._deadline = deadline
        self._done = 0
        self._done_lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    @property
    def done(self) -> int:
        with self._done_lock:
            return self._done

    def wait_done(self, count: int, timeout: float = 60) -> None:
        def answered() -> bool:
            return self.done >= count or not self._thread.is_alive()

        poll(answered, timeout, f"{count} requests answered")

    def join(self, timeout: float = 180) -> list[Outcome]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish in time"
        if self._errors:
            raise self._errors[0]
        return self.outcomes

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._errors.append(exc)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop_at = started + self._deadline
        queue: asyncio.Queue[Outcome] = asyncio.Queue()
        for outcome in self.outcomes:
            queue.put_nowait(outcome)
        next_slot = [started]
        limits = httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=self._timeout, limits=limits) as client:

            async def pace() -> bool:
                slot = next_slot[0]
                next_slot[0] = max(slot, loop.time()) + 1 / self._rate
                await asyncio.sleep(max(0.0, slot - loop.time()))
                return loop.time() < stop_at

            async def worker() -> None:
                while not queue.empty():
                    outcome = queue.get_nowait()
                    for attempt_no in range(self._attempts):
                        if not await pace():
                            break
                        attempt = await self._send(client, outcome)
                        outcome.attempts.append(attempt)
                        if attempt.ok or not outcome.request.has_ids:
                            break
                        if attempt.status is not None and attempt.status != 503:
                            break  # a definite refusal: retrying changes nothing
                        if attempt_no + 1 < self._attempts:
                            await asyncio.sleep(self._retry_delay)
                    with self._done_lock:
                        self._done += 1

            await asyncio.gather(*(worker() for _ in range(self._concurrency)))

    async def _send(self, client: httpx.AsyncClient, outcome: Outcome) -> Attempt:
        started = time.monotonic()
        try:
            response = await client.post(self._url, json=outcome.request.body())
        except httpx.HTTPError as exc:
            return Attempt(started, time.monotonic(), None, type(exc).__name__, None, str(exc))
        finished = time.monotonic()
        message = ""
        if 200 <= response.status_code < 300:
            outcome.event_ids = list(response.json()["events"])
        else:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = response.json()["error"]["message"]
        return Attempt(
            started,
            finished,
            response.status_code,
            None,
            response.headers.get("retry-after"),
            message,
        )


def summarise(outcomes: Sequence[Outcome]) -> str:
    """``200: 310, 503: 42, ConnectError: 3`` over every attempt."""
    counts = Counter(str(a.status) if a.status else a.error for o in outcomes for a in o.attempts)
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))


# --------------------------------------------------------------------------------------------
# Kafka: producing directly, offsets, lag
# --------------------------------------------------------------------------------------------


async def produce(
    bootstrap: str, messages: Sequence[tuple[bytes | None, bytes | None]], topic: str = EVENTS_RAW
) -> list[BaseException | None]:
    """Send each (key, value) in order and wait for its ack; per message the error or None."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=15000,
    )
    await producer.start()
    results: list[BaseException | None] = []
    try:
        for key, value in messages:
            try:
                await producer.send_and_wait(topic, value=value, key=key)
                results.append(None)
            except Exception as exc:
                results.append(exc)
    finally:
        await producer.stop()
    return results


async def topic_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> list[TopicPartition]:
    described = await admin.describe_topics(list(topics))
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def _offsets(
    bootstrap: str, group: str | None, topics: Sequence[str]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(log end offsets, committed offsets of ``group``; -1 where none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    try:
        await consumer.start()
        try:
            partitions = await topic_partitions(admin, topics)
            ends = await consumer.end_offsets(partitions)
            committed: dict[TopicPartition, int] = {}
            if group is not None:
                found = await admin.list_consumer_group_offsets(group, partitions=partitions)
                committed = {tp: (found[tp].offset if tp in found else -1) for tp in partitions}
            return dict(ends), committed
        finally:
            await consumer.stop()
    finally:
        await admin.close()


def end_offsets(bootstrap: str, topic: str = EVENTS_RAW) -> dict[int, int]:
    ends, _ = asyncio.run(_offsets(bootstrap, None, [topic]))
    return {tp.partition: offset for tp, offset in ends.items()}


def committed_offsets(bootstrap: str, group: str, topic: str = EVENTS_RAW) -> dict[int, int]:
    _, committed = asyncio.run(_offsets(bootstrap, group, [topic]))
    return {tp.partition: offset for tp, offset in committed.items()}


# Every topic a stage consumes (raw, enriched, failed, ...), not the compacted config topic.
PIPELINE_TOPICS = tuple(t.name for t in ALL_TOPICS if not t.compacted)


def lag(bootstrap: str, group: str) -> int:
    """Messages on the pipeline's topics that ``group`` has not committed."""
    ends, committed = asyncio.run(_offsets(bootstrap, group, PIPELINE_TOPICS))
    return sum(end - max(committed.get(tp, -1), 0) for tp, end in ends.items())


def _row_counts(stack: Stack) -> tuple[int, int]:
    [(events, failed)] = stack.query(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM failed_events)"
    )
    return int(events), int(failed)


def wait_drained(
    stack: Stack,
    acked_seqs: Sequence[str] = (),
    *,
    group: str | None = None,
    timeout: float = 90,
) -> None:
    """Until every acknowledged event is stored, ``group`` (the worker's) has committed every
    offset of every pipeline topic, and the row counts did not move between two looks.

    Offsets are committed only after the database commit, so a zero lag means every
    message on the topics has been stored or recorded as failed.
    """
    group = group or stack.group
    wanted = set(acked_seqs)
    last: list[tuple[int, int]] = []

    def drained() -> bool:
        if wanted and _stored_seq_count(stack, wanted) < len(wanted):
            return False
        if lag(stack.kafka, group) != 0:
            last.clear()
            return False
        counts = _row_counts(stack)
        settled = last == [counts]
        last[:] = [counts]
        return settled

    try:
        poll(drained, timeout, f"the pipeline to drain (group {group})", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.log_tail()}") from None


def stored_count(stack: Stack, seqs: Sequence[str]) -> int:
    """How many of ``seqs`` have at least one stored row."""
    return _stored_seq_count(stack, set(seqs))


def _stored_seq_count(stack: Stack, seqs: set[str]) -> int:
    [(count,)] = stack.query(
        "SELECT count(DISTINCT properties->>'seq') FROM events WHERE properties->>'seq' = ANY(%s)",
        list(seqs),
    )
    return int(count)


def metric_value(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` at ``url``/metrics matching ``labels``."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


# --------------------------------------------------------------------------------------------
# conservation
# --------------------------------------------------------------------------------------------


@dataclass
class Conservation:
    fault: str
    sent: int
    acknowledged: int
    stored: int
    duplicates: int
    lost: int
    failed: int = 0
    notes: str = ""
    problems: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.problems, f"{self.fault}: " + "; ".join(self.problems)


def conservation(
    stack: Stack,
    fault: str,
    sent: Mapping[str, str | None],
    acked: Mapping[str, str | None],
    *,
    failed: int = 0,
    notes: str = "",
) -> Conservation:
    """Check the guarantees for one run.

    ``sent``: seq -> the event id the client knows (its own, or the one in the 2xx answer;
    None when the gateway assigned one that never reached the client), for every event
    that went out at least once. ``acked``: the same for events that got a 2xx (or a
    broker ack when produced directly).
    """
    rows = stack.query(
        "SELECT properties->>'seq', id FROM events WHERE properties->>'seq' = ANY(%s)",
        list(sent),
    )
    copies: dict[str, list[str]] = {}
    for seq, event_id in rows:
        copies.setdefault(seq, []).append(event_id)
    result = Conservation(
        fault,
        sent=len(sent),
        acknowledged=len(acked),
        stored=len(copies),
        duplicates=sum(len(ids) - 1 for ids in copies.values()),
        lost=sum(1 for seq in acked if seq not in copies),
        failed=failed,
        notes=notes,
    )
    problems = result.problems
    if result.duplicates:
        doubled = [seq for seq, ids in copies.items() if len(ids) > 1][:5]
        problems.append(f"{result.duplicates} duplicate rows, e.g. {doubled}")
    if result.lost:
        missing = [seq for seq in acked if seq not in copies][:5]
        problems.append(f"{result.lost} acknowledged events lost, e.g. {missing}")
    wrong_ids = [
        (seq, copies[seq], known)
        for seq, known in acked.items()
        if known is not None and seq in copies and copies[seq] != [known]
    ]
    if wrong_ids:
        problems.append(f"stored under another id than acknowledged: {wrong_ids[:5]}")
    problems += _counter_mismatches(stack)
    return result


def _counter_mismatches(stack: Stack) -> list[str]:
    profiles = stack.query(
        """
        SELECT coalesce(p.id, e.profile_id), p.event_count, coalesce(e.n, 0)
        FROM profiles p
        FULL JOIN (SELECT profile_id, count(*) AS n FROM events GROUP BY profile_id) e
            ON e.profile_id = p.id
        WHERE p.event_count IS DISTINCT FROM coalesce(e.n, 0)
        """
    )
    sessions = stack.query(
        """
        SELECT coalesce(s.id, e.session_id), s.event_count, coalesce(e.n, 0)
        FROM sessions s
        FULL JOIN (
            SELECT session_id, count(*) AS n FROM events
            WHERE session_id IS NOT NULL GROUP BY session_id
        ) e ON e.session_id = s.id
        WHERE s.event_count IS DISTINCT FROM coalesce(e.n, 0)
        """
    )
    problems = []
    if profiles:
        problems.append(f"profiles.event_count != stored events: {profiles[:5]}")
    if sessions:
        problems.append(f"sessions.event_count != stored events: {sessions[:5]}")
    return problems


def http_conservation(
    stack: Stack, fault: str, outcomes: Sequence[Outcome], *, notes: str = ""
) -> Conservation:
    sent: dict[str, str | None] = {}
    acked: dict[str, str | None] = {}
    for outcome in outcomes:
        if not outcome.sent:
            continue
        answered = outcome.event_ids if outcome.acked else []
        for i, event in enumerate(outcome.request.events):
            known = event.id or (answered[i] if i < len(answered) else None)
            sent[event.seq] = known
            if outcome.acked:
                acked[event.seq] = known
    return conservation(stack, fault, sent, acked, notes=notes)


def acked_seqs(outcomes: Sequence[Outcome]) -> list[str]:
    return [e.seq for o in outcomes if o.acked for e in o.request.events]


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


class Report:
    COLUMNS = (
        "fault", "events sent", "acknowledged", "stored", "failed events", "duplicates", "lost",
        "seconds", "notes",
    )  # fmt: skip

    def __init__(self) -> None:
        self.rows: list[tuple[Conservation, float]] = []

    def add(self, row: Conservation, seconds: float) -> None:
        self.rows.append((row, seconds))

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.COLUMNS) + " |",
            "|" + "|".join("---" for _ in self.COLUMNS) + "|",
        ]
        for r, seconds in self.rows:
            cells = (
                r.fault, r.sent, r.acknowledged, r.stored, r.failed, r.duplicates, r.lost,
                f"{seconds:.0f}", r.notes,
            )  # fmt: skip
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, path: Path = REPORT_PATH) -> str:
        text = "# trackflow fault-injection report\n\n" + self.markdown()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return text


class Clock:
    """Seconds since the test began; ``step`` prints a timeline (visible with ``-s``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started

    def step(self, what: str) -> None:
        print(f"[{self.name} +{self():5.1f}s] {what}", flush=True)


@contextlib.contextmanager
def timed(name: str = "fault") -> Iterator[Clock]:
    yield Clock(name)


def event_json(**fields: Any) -> bytes:
    return orjson.dumps(fields)
