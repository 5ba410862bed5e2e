"""Workflows end to end, on a real broker, database and HTTP receiver on loopback: rules
applied with the CLI while the stack runs, profile changes, emitted events, webhooks with
retries, idempotency keys and dead letters, and invalid rule files refused.

The module runs its own Kafka and PostgreSQL (like the fault suite): rules live on the
broker's config topic, so a stack of its own keeps them from acting on other tests' events.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processors.migrate import apply_migrations
from schemas.producer import raw_event_message
from schemas.topics import EVENTS_RAW
from tests.integration.harness import TrackflowProcess, cli, local_services, poll
from trackflow.kafka_admin import ensure_topics
from trackflow.localstack import free_port

SECRET = "s3cr3t-token-value"
FAILURES_BEFORE_SUCCESS = 3


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class Receiver:
    """A webhook receiver on loopback. ``/ok`` answers 200; ``/flaky`` answers 503 to the
    first three attempts of each idempotency key, then 200; ``/down`` always 500; ``/slow``
    answers after 3 s. Business logic runs once per idempotency key, on a 200."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.business: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                status = receiver.handle(self.path, dict(self.headers.items()), raw)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> int:
        key = headers.get("Idempotency-Key", "")
        with self._lock:
            self.hits.append(Hit(path, headers, json.loads(raw) if raw else None, time.time()))
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        if path.startswith("/slow"):
            time.sleep(3)
            return 500
        if path.startswith("/down"):
            return 500
        if path.startswith("/flaky") and attempts <= FAILURES_BEFORE_SUCCESS:
            return 503
        with self._lock:
            self.business[key] = self.business.get(key, 0) + 1
        return 200

    def hits_for(self, event_id: str) -> list[Hit]:
        with self._lock:
            return [
                h for h in self.hits if isinstance(h.body, dict) and h.body.get("event") == event_id
            ]

    def stop(self) -> None:
        self.server.shutdown()


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    database_url: str
    gateway_url: str
    worker_url: str
    receiver: Receiver
    worker_log: Path
    rules_dir: Path


@pytest.fixture(scope="module")
def wf() -> Iterator[Stack]:
    with local_services("workflows") as (services, _broker, _cluster):
        apply_migrations(services.database_url)
        asyncio.run(ensure_topics(services.kafka, partitions=3))
        gateway_port, worker_port = free_port(), free_port()
        env = {
            "TRACKFLOW_KAFKA_BOOTSTRAP": services.kafka,
            "TRACKFLOW_DATABASE_URL": services.database_url,
            "TRACKFLOW_GATEWAY_PORT": str(gateway_port),
            "TRACKFLOW_WORKER_PORT": str(worker_port),
            "TRACKFLOW_STORE_BATCH_SECONDS": "0.05",
            "TRACKFLOW_WORKER_ID": "trackflow-workflows",
            "TRACKFLOW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "TRACKFLOW_WEBHOOK_SECRETS": json.dumps({"HOOK_TOKEN": SECRET}),
            "TRACKFLOW_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
            "TRACKFLOW_WEBHOOK_RETRY_MAX_SECONDS": "1",
        }
        added = cli("sources", "add", "Shop", "--id", "shop", env=env)
        assert added.returncode == 0, added.stderr
        logs = Path(tempfile.mkdtemp(prefix="trackflow-wf-logs-"))
        receiver = Receiver()
        worker = TrackflowProcess("worker", env, f"http://127.0.0.1:{worker_port}/readyz", logs)
        gateway = TrackflowProcess("gateway", env, f"http://127.0.0.1:{gateway_port}/readyz", logs)
        worker.start()
        gateway.start()
        try:
            yield Stack(
                env,
                services.database_url,
                f"http://127.0.0.1:{gateway_port}",
                f"http://127.0.0.1:{worker_port}",
                receiver,
                worker.log_path,
                logs,
            )
        finally:
            gateway.stop()
            worker.stop()
            receiver.stop()
            shutil.rmtree(logs, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------


def send(s: Stack, profile: str, event_type: str, **properties: Any) -> str:
    response = httpx.post(
        f"{s.gateway_url}/track",
        json={
            "source": {"id": "shop"},
            "profile": {"id": profile},
            "events": [{"type": event_type, "properties": properties}],
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    event_id: str = response.json()["events"][0]
    return event_id


def query(s: Stack, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(s.database_url) as conn:
        return conn.execute(sql, params).fetchall()


def one(s: Stack, sql: str, *params: object) -> Any:
    rows = query(s, sql, *params)
    return rows[0] if rows else None


def apply_file(s: Stack, name: str, text: str) -> Any:
    path = s.rules_dir / name
    path.write_text(text)
    return cli("rules", "apply", str(path), env=s.env)


def apply_ok(s: Stack, name: str, text: str, *rule_ids: str) -> None:
    """Apply a rule file and wait until the worker's config mirror has every rule in it."""
    result = apply_file(s, name, text)
    assert result.returncode == 0, result.stderr
    for rule_id in rule_ids:
        poll(functools.partial(one, s, "SELECT 1 FROM rules WHERE id = %s", rule_id), 20, rule_id)


def stored(s: Stack, event_id: str) -> None:
    poll(functools.partial(one, s, "SELECT 1 FROM events WHERE id = %s", event_id), 30, "stored")


def evaluated(s: Stack, event_id: str) -> Any:
    return poll(functools.partial(run_of, s, event_id), 30, f"workflow run of {event_id}")


def wait_hit(s: Stack, event_id: str) -> Hit:
    poll(functools.partial(s.receiver.hits_for, event_id), 30, f"webhook call for {event_id}")
    return s.receiver.hits_for(event_id)[0]


async def read_topic(s: Stack, topic: str) -> list[Any]:
    """Every message on a topic, read from the beginning."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=s.env["TRACKFLOW_KAFKA_BOOTSTRAP"], auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [m for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()


def run_of(s: Stack, event_id: str) -> Any:
    return one(s, "SELECT matched_rules FROM workflow_runs WHERE event_id = %s", event_id)


def profile_of(s: Stack, profile: str) -> Any:
    return one(s, "SELECT tags, traits FROM profiles WHERE id = %s", profile)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


HIGH_VALUE = """
rules:
  - id: high-value
    name: Tag high-value customers
    priority: 100
    when:
      event_types: [purchase]
      condition: {">": [{var: event.properties.amount}, 100]}
    then:
      - action: tag
        tags: [high-value]
      - action: increment_trait
        trait: purchases.high_value_count
        by: 1
      - action: emit_event
        type: high-value-customer
        properties:
          amount: "{{ event.properties.amount }}"
      - action: produce
        topic: crm.high-value
        value: {event: "{{ event.id }}", amount: "{{ event.properties.amount }}"}
  - id: every-purchase
    name: Count purchases
    when: {event_types: [purchase]}
    then:
      - action: increment_trait
        trait: purchases.count
"""


# -- tests -----------------------------------------------------------------------------------


def test_a_purchase_over_100_tags_the_profile_and_one_under_does_not(wf: Stack) -> None:
    apply_ok(wf, "high-value.yaml", HIGH_VALUE, "high-value", "every-purchase")
    big, small = new_id("big"), new_id("small")
    first = send(wf, big, "purchase", amount=150, currency="EUR")
    under = send(wf, small, "purchase", amount=50)
    poll(lambda: run_of(wf, first) and run_of(wf, under), 30, "both purchases evaluated")
    assert run_of(wf, first) == (["high-value", "every-purchase"],)
    assert run_of(wf, under) == (["every-purchase"],)
    tags, traits = profile_of(wf, big)
    assert tags == ["high-value"]
    assert traits["purchases"] == {"high_value_count": 1, "count": 1}
    tags, traits = profile_of(wf, small)
    assert tags == [] and traits["purchases"] == {"count": 1}

    # a second purchase sees the state the first one's actions left (counts 2, tag kept once)
    second = send(wf, big, "purchase", amount=300)
    poll(lambda: run_of(wf, second), 30, "the second purchase evaluated")
    tags, traits = profile_of(wf, big)
    assert tags == ["high-value"] and traits["purchases"] == {"high_value_count": 2, "count": 2}

    # the emitted event went through the pipeline like any other, once per source event
    def emitted_events() -> list[tuple[Any, ...]] | None:
        rows = query(
            wf,
            "SELECT id, properties FROM events WHERE profile_id = %s"
            " AND type = 'high-value-customer' ORDER BY received_at",
            big,
        )
        return rows if len(rows) == 2 else None

    emitted: Any = poll(emitted_events, 30, "two high-value-customer events stored")
    assert [row[1]["amount"] for row in emitted] == [150, 300]
    assert all(row[0].startswith("wf-") for row in emitted)
    outcomes = query(
        wf,
        "SELECT rule_id, action_index, action, status FROM action_outcomes"
        " WHERE event_id = %s ORDER BY rule_id, action_index",
        first,
    )
    assert outcomes == [
        ("every-purchase", 0, "increment_trait", "applied"),
        ("high-value", 0, "tag", "applied"),
        ("high-value", 1, "increment_trait", "applied"),
        ("high-value", 2, "emit_event", "emitted"),
        ("high-value", 3, "produce", "produced"),
    ]
    produced = asyncio.run(read_topic(wf, "crm.high-value"))
    mine = [m for m in produced if orjson.loads(m.value)["event"] == first]
    assert len(mine) == 1 and mine[0].key == big.encode()
    assert orjson.loads(mine[0].value) == {"event": first, "amount": 150}
    assert dict(mine[0].headers)["Idempotency-Key"]
    metrics = httpx.get(f"{wf.worker_url}/metrics", timeout=10).text
    assert 'trackflow_rule_matches_total{rule="high-value"} 2.0' in metrics
    assert 'trackflow_stage_events_total{outcome="ok",stage="workflow"}' in metrics


def test_an_event_delivered_twice_runs_its_actions_once(wf: Stack) -> None:
    apply_ok(wf, "high-value.yaml", HIGH_VALUE, "high-value", "every-purchase")
    profile, event_id = new_id("twice"), new_id("purchase")
    body = {
        "source": {"id": "shop"},
        "profile": {"id": profile},
        "events": [{"type": "purchase", "id": event_id, "properties": {"amount": 500}}],
    }
    for _ in range(2):
        response = httpx.post(f"{wf.gateway_url}/track", json=body, timeout=10)
        assert response.status_code == 200, response.text
    marker = send(wf, profile, "purchase", amount=1)  # after both copies, same partition
    evaluated(wf, marker)
    tags, traits = profile_of(wf, profile)
    assert tags == ["high-value"]
    assert traits["purchases"] == {"high_value_count": 1, "count": 2}
    emitted_sql = "SELECT id FROM events WHERE profile_id = %s AND type = 'high-value-customer'"
    poll(functools.partial(query, wf, emitted_sql, profile), 30, "the emitted event stored")
    marker_emitted = send(wf, profile, "purchase", amount=2)  # one more round through the stages
    evaluated(wf, marker_emitted)
    stored(wf, marker_emitted)
    assert len(query(wf, emitted_sql, profile)) == 1, "the event emitted for both copies is one"


NOTES = """
- id: keep-note
  name: Keep the last note
  when: {event_types: [note]}
  then:
    - {action: set_trait, trait: last_note, value_from: event.properties.text}
"""


async def produce_raw(s: Stack, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=s.env["TRACKFLOW_KAFKA_BOOTSTRAP"], acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(EVENTS_RAW, key=key, value=value)
    finally:
        await producer.stop()


def test_a_value_postgresql_cannot_store_fails_one_event_and_the_flow_goes_on(wf: Stack) -> None:
    apply_ok(wf, "notes.yaml", NOTES, "keep-note")
    profile = new_id("notes")
    poison, good = new_id("poison"), new_id("good")

    def note(event_id: str, text: str) -> tuple[bytes, bytes]:
        return raw_event_message(
            "note",
            profile_id=profile,
            source_id="shop",
            event_id=event_id,
            properties={"text": text},
        )

    # the poison alone first: in one batch with a later note, its value would be overwritten
    # before anything is written, and nothing would be refused
    asyncio.run(produce_raw(wf, [note(poison, "nul \x00 inside")]))
    reason = poll(
        functools.partial(
            one,
            wf,
            "SELECT reason FROM failed_events WHERE stage = 'workflow' AND event_id = %s",
            poison,
        ),
        30,
        "the workflow's failed event",
    )
    assert "postgresql rejected the write" in reason[0]  # type: ignore[index]
    assert run_of(wf, poison) is None
    asyncio.run(produce_raw(wf, [note(good, "fine")]))
    evaluated(wf, good)
    assert profile_of(wf, profile)[1]["last_note"] == "fine"


def webhook_rules(s: Stack) -> str:
    def hook(rule_id: str, event_type: str, path: str, attempts: int, timeout: float) -> str:
        return f"""
  - id: {rule_id}
    name: Webhook {rule_id}
    when: {{event_types: [{event_type}]}}
    then:
      - action: webhook
        url: {s.receiver.url(path)}?profile={{{{ event.profile_id }}}}
        headers:
          Authorization: "Bearer ${{secret:HOOK_TOKEN}}"
          X-Plan: '{{{{ event.properties.plan | default: "free" }}}}'
        body:
          event: "{{{{ event.id }}}}"
          email: "{{{{ event.properties.email }}}}"
          amount: "{{{{ event.properties.amount | default: null }}}}"
          greeting: "Hello {{{{ event.properties.name }}}}!"
        timeout_seconds: {timeout}
        max_attempts: {attempts}
"""

    return "rules:" + "".join(
        [
            hook("hook-ok", "signup", "/ok", 5, 5),
            hook("hook-flaky", "flaky-signup", "/flaky", 6, 5),
            hook("hook-down", "doomed", "/down", 4, 5),
            hook("hook-slow", "slow", "/slow", 5, 1),
        ]
    )


def delivery(s: Stack, event_id: str) -> Any:
    return one(
        s,
        "SELECT status, attempts, last_status_code, last_error FROM webhook_deliveries"
        " WHERE event_id = %s",
        event_id,
    )


def wait_delivery(s: Stack, event_id: str, status: str, timeout: float) -> None:
    try:
        poll(lambda: (delivery(s, event_id) or ("",))[0] == status, timeout, f"{status} row")
    except AssertionError as exc:
        facts = {
            "webhook_deliveries": delivery(s, event_id),
            "stored": one(s, "SELECT type, profile_id FROM events WHERE id = %s", event_id),
            "workflow_runs": run_of(s, event_id),
            "failed_events": query(s, "SELECT stage, reason FROM failed_events"),
        }
        log = s.worker_log.read_text()[-3000:]
        raise AssertionError(f"{exc}; {facts}; worker log:\n{log}") from None


def test_a_webhook_delivers_the_templated_body_with_the_secret_header(wf: Stack) -> None:
    apply_ok(wf, "hooks.yaml", webhook_rules(wf), "hook-ok", "hook-flaky", "hook-down")
    profile = new_id("hook")
    event_id = send(wf, profile, "signup", email="ada@example.com", amount=12.5, name="Ada")
    hit = wait_hit(wf, event_id)
    assert len(wf.receiver.hits_for(event_id)) == 1
    assert hit.path == f"/ok?profile={profile}"
    assert hit.body == {
        "event": event_id,
        "email": "ada@example.com",
        "amount": 12.5,
        "greeting": "Hello Ada!",
    }
    assert hit.headers["Authorization"] == f"Bearer {SECRET}"
    assert hit.headers["X-Plan"] == "free"
    assert len(hit.headers["Idempotency-Key"]) == 32
    wait_delivery(wf, event_id, "delivered", 20)
    assert delivery(wf, event_id) == ("delivered", 1, 200, None)
    assert SECRET not in wf.worker_log.read_text(), "a secret was logged"
    row = one(wf, "SELECT definition::text FROM rules WHERE id = 'hook-ok'")
    assert SECRET not in row[0] and "${secret:HOOK_TOKEN}" in row[0]


def test_a_receiver_failing_three_times_gets_the_event_once_under_one_key(wf: Stack) -> None:
    apply_ok(wf, "hooks.yaml", webhook_rules(wf), "hook-flaky")
    event_id = send(wf, new_id("flaky"), "flaky-signup", email="bo@example.com", name="Bo")
    wait_delivery(wf, event_id, "delivered", 60)
    hits = wf.receiver.hits_for(event_id)
    assert len(hits) == FAILURES_BEFORE_SUCCESS + 1
    keys = {h.headers["Idempotency-Key"] for h in hits}
    assert len(keys) == 1, "the same idempotency key on every attempt"
    assert wf.receiver.business[keys.pop()] == 1, "business logic ran exactly once"
    assert delivery(wf, event_id) == ("delivered", 4, 200, None)
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert all(gap < 5 for gap in gaps), f"retries wait with capped backoff: {gaps}"


def test_an_always_failing_receiver_is_dead_lettered_while_other_events_flow(wf: Stack) -> None:
    apply_ok(wf, "hooks.yaml", webhook_rules(wf), "hook-ok", "hook-down", "hook-slow")
    doomed = send(wf, new_id("doomed"), "doomed", email="x@example.com", name="X")
    slow = send(wf, new_id("slow"), "slow", email="y@example.com", name="Y")
    # while both retry, other events' webhooks arrive at once and events are stored
    latencies, slow_states = [], []
    for i in range(5):
        sent_at = time.time()
        event_id = send(wf, new_id("meanwhile"), "signup", email=f"m{i}@example.com", name="M")
        hit = wait_hit(wf, event_id)
        latencies.append(hit.at - sent_at)
        slow_states.append((delivery(wf, slow) or ("pending",))[0])
        stored(wf, event_id)
    print(f"webhook latency while two calls retry: {[round(x, 3) for x in latencies]} s")
    assert slow_states[0] in ("pending", "retrying"), "delivered while the slow call retried"
    assert max(latencies) < 3, f"webhooks of other events were held up: {latencies}"

    wait_delivery(wf, doomed, "dead_letter", 60)
    assert delivery(wf, doomed) == ("dead_letter", 4, 500, "HTTP 500")
    assert len(wf.receiver.hits_for(doomed)) == 4
    wait_delivery(wf, slow, "dead_letter", 60)
    _, attempts, code, error = delivery(wf, slow)
    assert (attempts, code) == (5, None) and "timed out after 1.0s" in error
    metrics = httpx.get(f"{wf.worker_url}/metrics", timeout=10).text
    assert 'trackflow_webhook_deliveries_total{attempt="4",outcome="dead_letter"} 1.0' in metrics
    assert 'outcome="retry"' in metrics and 'outcome="delivered"' in metrics


LIVE = """
- id: live-vip
  name: VIP visitors
  when:
    event_types: [visit]
    condition: {"==": [{var: event.properties.plan}, "gold"]}
  then:
    - {action: tag, tags: [vip]}
- id: live-audit
  name: Remember the last visit
  priority: -1
  when: {event_types: [visit]}
  then:
    - {action: set_trait, trait: last_plan, value_from: event.properties.plan}
"""


def test_a_rule_applied_while_running_acts_at_once_and_a_disabled_one_stops(wf: Stack) -> None:
    before = new_id("before")
    first = send(wf, before, "visit", plan="gold")
    stored(wf, first)
    assert run_of(wf, first) is None  # no rule for visits yet

    started = time.monotonic()
    result = apply_file(wf, "live.json", json.dumps(yaml.safe_load(LIVE)))
    assert result.returncode == 0, result.stderr
    assert "created    live-vip" in result.stdout
    tagged = new_id("after")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the next events, until the worker has the rule
        event_id = send(wf, tagged, "visit", plan="gold")
        stored(wf, event_id)
        try:  # evaluated, once the worker has the rules (else no rule wants a visit)
            poll(functools.partial(run_of, wf, event_id), 2, "a run")
        except AssertionError:
            continue
        if "vip" in profile_of(wf, tagged)[0]:
            break
    took = time.monotonic() - started
    print(f"a rule applied while running acted {took:.2f}s after `trackflow rules apply`")
    assert "vip" in profile_of(wf, tagged)[0], "the new rule never acted"
    assert took < 15, f"the rule took {took:.1f}s to act"
    assert profile_of(wf, tagged)[1]["last_plan"] == "gold"

    disabled = cli("rules", "disable", "live-vip", env=wf.env)
    assert disabled.returncode == 0 and "live-vip disabled" in disabled.stdout
    poll(lambda: one(wf, "SELECT NOT enabled FROM rules WHERE id = 'live-vip'")[0], 20, "off")
    listed = cli("rules", "list", env=wf.env)
    assert any(line.split()[:2] == ["live-vip", "no"] for line in listed.stdout.splitlines()), (
        listed.stdout
    )
    untagged = new_id("disabled")
    deadline = time.monotonic() + 20
    while True:  # until the worker evaluates with the rule disabled
        event_id = send(wf, untagged, "visit", plan="gold")
        matched = evaluated(wf, event_id)
        if matched == (["live-audit"],) or time.monotonic() > deadline:
            break
    assert matched == (["live-audit"],), "the disabled rule still matched"
    tags, traits = profile_of(wf, untagged)
    assert "vip" not in tags and traits["last_plan"] == "gold"


def test_an_invalid_rule_file_is_refused_naming_rule_and_field_and_changes_nothing(
    wf: Stack,
) -> None:
    text = """
rules:
  - id: fine-rule
    name: Would be fine
    when: {event_types: [purchase]}
    then: [{action: tag, tags: [fine]}]
  - id: broken-rule
    name: Broken
    when:
      event_types: [purchase]
      condition: {">": [{var: events.properties.amount}, 100]}
    then:
      - {action: webhook, url: "ftp://example.com/x"}
"""
    result = apply_file(wf, "broken.yaml", text)
    assert result.returncode == 1
    assert 'rule "broken-rule" when.condition' in result.stderr
    assert "must start with one of event, profile, session" in result.stderr
    assert 'rule "broken-rule" then[0].url' in result.stderr
    assert "is not a webhook scheme (http, https)" in result.stderr
    assert "nothing was applied" in result.stderr
    listed = cli("rules", "list", env=wf.env)
    assert listed.returncode == 0 and "fine-rule" not in listed.stdout
    assert one(wf, "SELECT 1 FROM rules WHERE id IN ('fine-rule', 'broken-rule')") is None

    unknown = cli("rules", "disable", "no-such-rule", env=wf.env)
    assert unknown.returncode == 1 and "no rule with id 'no-such-rule'" in unknown.stderr
