"""The workflow stage's batch planning and the rules a worker holds: pure, no I/O."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from processors.errors import InvalidEvent
from processors.metrics import WorkerMetrics
from processors.store_step import Message
from processors.workflow_stage import (
    Item,
    RuleRegistry,
    WorkflowStep,
    outcome_rows,
    plan_batch,
    wants,
)
from processors.workflow_store import OutcomeRow, RunRow
from schemas import FailedEvent, decode_raw_event, encode
from schemas.config import ConfigRecord, EventSource, config_key, parse_config_record
from schemas.rules import RuleRecord, WebhookDelivery
from schemas.topics import EVENTS_RAW, WEBHOOKS
from tests.unit.workflow._support import T0, event, rule

BIG = rule(
    "big",
    when={
        "event_types": ["purchase"],
        "condition": {">": [{"var": "event.properties.amount"}, 100]},
    },
    then=[
        {"action": "tag", "tags": ["high-value"]},
        {"action": "increment_trait", "trait": "purchases.count"},
    ],
)


def items(*events: Any) -> list[Item]:
    return [Item(e, Message("t", 0, i, b"")) for i, e in enumerate(events)]


def plan(rules: list[Any], batch: list[Item], profiles: dict[str, Any] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    return plan_batch(rules, batch, profiles or {}, {}, kw.pop("done", set()), T0, 3, **kw)


def test_each_event_sees_the_profile_as_the_earlier_events_actions_left_it() -> None:
    first = event(id="e1", properties={"amount": 150})
    second = event(id="e2", properties={"amount": 200})
    small = event(id="e3", profile_id="prof-2", properties={"amount": 50})
    result = plan([BIG], items(first, second, small), {"prof-1": {"id": "prof-1", "tags": ["old"]}})
    assert result.profiles["prof-1"]["tags"] == ["old", "high-value"]
    assert result.profiles["prof-1"]["traits"] == {"purchases": {"count": 2}}
    assert "prof-2" not in result.profiles, "an event no rule matched changes nothing"
    assert [r.matched_rules for r in result.runs] == [("big",), ("big",), ()]
    assert result.trait_times == {"prof-1": {"purchases": T0.isoformat()}}


def test_events_already_run_are_skipped_and_counted_as_duplicates() -> None:
    again = event(id="e1", properties={"amount": 150})
    result = plan([BIG], items(again, again), done={"e1"})
    assert result.duplicates == 2 and not result.runs and not result.profiles
    twice = plan([BIG], items(again, again))
    assert twice.duplicates == 1 and len(twice.runs) == 1
    assert twice.profiles["prof-1"]["traits"] == {"purchases": {"count": 1}}


def test_a_merged_profile_id_is_evaluated_and_written_as_its_canonical_profile() -> None:
    merged = event(id="e1", profile_id="old-id", properties={"amount": 150})
    canonical_row = {"id": "root", "tags": ["vip"], "traits": {"purchases": {"count": 4}}}
    result = plan([BIG], items(merged), {"root": canonical_row}, canonical={"old-id": "root"})
    assert set(result.profiles) == {"root"}
    assert result.profiles["root"]["traits"] == {"purchases": {"count": 5}}


def test_emitted_events_webhooks_and_productions_become_kafka_records() -> None:
    r = rule(
        "all",
        then=[
            {"action": "emit_event", "type": "echo", "properties": {"of": "{{ event.id }}"}},
            {"action": "webhook", "url": "https://hooks.example.com/x", "body": {"a": 1}},
            {"action": "produce", "topic": "crm.signups", "value": {"id": "{{ event.id }}"}},
        ],
    )
    result = plan([r], items(event(id="e1")))
    emitted, hook, produced = result.outgoing
    assert (emitted.topic, emitted.key) == (EVENTS_RAW, b"prof-1")
    assert orjson.loads(emitted.value)["id"].startswith("wf-")
    assert (hook.topic, produced.topic) == (WEBHOOKS, "crm.signups")
    request = WebhookDelivery.model_validate_json(hook.value)
    assert request.attempt == 1 and request.due_at == T0 and request.call.body == {"a": 1}
    assert hook.key == request.call.idempotency_key.encode()
    assert result.calls == [request.call]
    assert orjson.loads(produced.value) == {"id": "e1"}
    assert produced.headers[0][0] == "Idempotency-Key" and produced.outcome is not None


def test_outcome_rows_say_what_was_done_and_a_failed_production_is_recorded() -> None:
    r = rule(
        "mixed",
        then=[
            {"action": "tag", "tags": ["t"]},
            {"action": "set_trait", "trait": "x", "value_from": "event.properties.missing"},
            {"action": "produce", "topic": "crm.signups"},
            {"action": "stop"},
        ],
    )
    result = plan([r], items(event(id="e1")))
    rows = outcome_rows(result, {("mixed", 2, "e1"): "could not produce"})
    assert [(o.outcome.action, o.status) for o in rows] == [
        ("tag", "applied"),
        ("set_trait", "failed"),
        ("produce", "failed"),
        ("stop", "stopped"),
    ]
    assert "missing" in (rows[1].error or "") and rows[2].error == "could not produce"


def test_a_profile_less_event_changes_no_profile_and_its_profile_actions_fail_saying_why() -> None:
    r = rule(
        "mixed",
        then=[
            {"action": "tag", "tags": ["t"]},
            {"action": "increment_trait", "trait": "n"},
            {"action": "webhook", "url": "https://hooks.example.com/x", "body": {"a": 1}},
            {"action": "emit_event", "type": "echo"},
        ],
    )
    less = event(id="e1", profile_id="k-1", options={"profile_less": True})
    result = plan([r], items(less), {"k-1": {"id": "k-1", "tags": ["old"]}})
    assert result.profiles == {} and result.trait_times == {}
    assert [o.topic for o in result.outgoing] == [WEBHOOKS, EVENTS_RAW]
    assert decode_raw_event(result.outgoing[1].value).profile_less  # and so is what it emits
    rows = outcome_rows(result, {})
    assert [(o.outcome.action, o.status) for o in rows] == [
        ("tag", "failed"),
        ("increment_trait", "failed"),
        ("webhook", "queued"),
        ("emit_event", "emitted"),
    ]
    assert rows[0].error == "a profile-less event has no profile to change"


def test_wants_checks_type_and_source_filters_only() -> None:
    only_web = rule("w", when={"event_types": ["purchase"], "sources": ["web"]})
    assert wants([only_web], event())
    assert not wants([only_web], event("page-view"))
    assert not wants([only_web], event(source_id="app"))
    assert wants([rule("any")], event("anything"))


def test_the_registry_keeps_the_newest_record_and_orders_enabled_rules() -> None:
    registry = RuleRegistry()
    low, high = rule("low", priority=1), rule("high", priority=9)
    registry.apply(RuleRecord(rule=low, updated_at=T0))
    registry.apply(RuleRecord(rule=high, updated_at=T0))
    assert [r.id for r in registry.enabled()] == ["high", "low"]
    off = high.model_copy(update={"enabled": False})
    registry.apply(RuleRecord(rule=off, updated_at=T0 + timedelta(seconds=1)))
    registry.apply(RuleRecord(rule=high, updated_at=T0))  # older: ignored
    assert [r.id for r in registry.enabled()] == ["low"]
    assert [r.rule.id for r in registry.all()] == ["high", "low"]


def test_config_records_of_both_kinds_parse_and_keep_their_keys() -> None:
    source = ConfigRecord(kind="source", source=EventSource(id="web", name="Web", updated_at=T0))
    record = RuleRecord(rule=rule("r1"), updated_at=T0)
    assert parse_config_record(source.model_dump_json()) == source
    assert parse_config_record(record.model_dump_json()) == record
    assert (config_key(source), config_key(record)) == (b"source:web", b"rule:r1")
    registry = RuleRegistry()
    registry.apply(source)  # a source record is not a rule
    assert registry.all() == []
    with pytest.raises(ValueError, match="kind"):
        parse_config_record(b'{"v": 1, "kind": "sink"}')


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def lock_profiles(
        self, first_seen: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        return {}, {pid: pid for pid in first_seen}

    async def done_events(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.store.runs}

    async def read_sessions(self, ids: Sequence[str]) -> dict[str, Any]:
        return {}

    async def write_profiles(self, profiles: Any, times: Any) -> None:
        self.store.profiles.update(profiles)

    async def record_runs(self, runs: Sequence[RunRow], calls: Any) -> None:
        if any("\x00" in r.event_id for r in runs):
            raise InvalidEvent("workflow", "postgresql rejected the write: NUL")
        self.store.pending.extend(r.event_id for r in runs)

    async def record_outcomes(self, outcomes: Sequence[OutcomeRow]) -> None:
        self.store.outcomes.extend(outcomes)


class FakeStore:
    """The transaction contract of WorkflowStore, in memory: a failed transaction keeps
    nothing (the runs are committed only when the block ends without an error)."""

    def __init__(self) -> None:
        self.runs: set[str] = set()
        self.pending: list[str] = []
        self.profiles: dict[str, Any] = {}
        self.outcomes: list[OutcomeRow] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        self.pending = []
        yield FakeTx(self)
        self.runs.update(self.pending)


async def test_a_batch_postgresql_refuses_is_run_event_by_event_and_the_refused_one_fails() -> None:
    store = FakeStore()
    sent: list[Any] = []
    failed: list[FailedEvent] = []
    registry = RuleRegistry([RuleRecord(rule=BIG, updated_at=T0)])

    async def send(records: Sequence[Any]) -> list[BaseException | None]:
        sent.extend(records)
        return [None for _ in records]

    async def send_failed(failures: Sequence[FailedEvent]) -> None:
        failed.extend(failures)

    metrics = WorkerMetrics(CollectorRegistry())
    step = WorkflowStep(
        store,  # type: ignore[arg-type]
        registry,
        decode_raw_event,
        send,
        send_failed,
        metrics,
        1.0,
        lambda: T0,
    )
    good = event(id="good", properties={"amount": 150})
    bad = event(id="b\x00d", properties={"amount": 150})
    other = event("page-view", id="other")
    batch = [Message("enriched", 0, i, encode(e)) for i, e in enumerate([good, bad, other])]
    await step(batch)
    assert store.runs == {"good"}
    assert [(f.stage, f.event_id, f.offset) for f in failed] == [("workflow", "b\x00d", 1)]
    assert "rejected the write" in failed[0].reason
    sample = metrics.registry.get_sample_value
    assert sample("trackflow_stage_events_total", {"stage": "workflow", "outcome": "ok"}) == 1
    assert sample("trackflow_stage_events_total", {"stage": "workflow", "outcome": "skipped"}) == 1
    assert sample("trackflow_rule_matches_total", {"rule": "big"}) == 1

    await step(batch[:1])  # a replay of the good one changes nothing
    assert (
        sample("trackflow_stage_events_total", {"stage": "workflow", "outcome": "duplicate"}) == 1
    )
