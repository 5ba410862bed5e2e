"""Wiring the workflow stage: the rules a worker holds, and one batch of enriched events.

The workflow agent consumes ``trackflow.events.enriched.v1`` next to the store agent (its
own consumer of the same topic, in parallel, not in series: no extra hop before the store).
The topic is keyed by profile id, so one agent instance sees a profile's events in order.

For a batch, :class:`WorkflowStep`:

1. keeps the events some enabled rule's filters (event type, source) let through; a batch
   with none does no I/O at all;
2. in ONE PostgreSQL transaction: locks the batch's profiles (id order), skips events that
   already ran (``workflow_runs``), and evaluates the rest in order with :func:`plan_batch`,
   each against the profile as the earlier events' actions left it;
3. writes tags and traits, the runs and the pending webhook deliveries;
4. has Kafka acknowledge what the actions produce: emitted events (raw topic, keyed by
   profile id, with ids derived from event, rule and action, so replays deduplicate), webhook
   delivery requests (the webhooks topic; the deliverer sends them, never this stage) and
   messages for other topics;
5. records every action's outcome and commits. A crash before the commit replays the batch:
   the same decisions, the same ids. When PostgreSQL refuses a batch (a value it cannot
   store), each event runs alone and the refused ones go to the failed events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from processors.errors import InvalidEvent
from processors.metrics import WorkerMetrics
from processors.retry import retry_while_retriable
from processors.store_step import Message, failed_event
from processors.workflow import apply_patch, evaluate, order_rules
from processors.workflow.scope import to_json
from processors.workflow_store import OutcomeRow, RunRow, WorkflowStore
from schemas import FailedEvent, InvalidMessage, RawEvent, encode
from schemas.config import ConfigRecord
from schemas.rules import (
    ActionOutcome,
    AddTags,
    EmitEvent,
    PatchProfile,
    ProduceMessage,
    RemoveTags,
    Rule,
    RuleRecord,
    WebhookCall,
    WebhookDelivery,
    WorkflowResult,
)
from schemas.topics import EVENTS_RAW, WEBHOOKS

__all__ = [
    "STAGE",
    "BatchPlan",
    "Outgoing",
    "RuleRegistry",
    "WorkflowStep",
    "plan_batch",
    "wants",
]

STAGE = "workflow"
log = logging.getLogger(__name__)


class RuleRegistry:
    """The latest record of each rule, as read from the config topic."""

    def __init__(self, records: Sequence[RuleRecord] = ()) -> None:
        self._records: dict[str, RuleRecord] = {}
        self._ordered: list[Rule] = []
        for record in records:
            self.apply(record)

    def apply(self, record: ConfigRecord | RuleRecord) -> None:
        if not isinstance(record, RuleRecord):
            return
        current = self._records.get(record.rule.id)
        if current is None or current.updated_at <= record.updated_at:
            self._records[record.rule.id] = record
            self._ordered = order_rules(r.rule for r in self._records.values())

    def enabled(self) -> list[Rule]:
        """Enabled rules in evaluation order (priority high to low, then id)."""
        return self._ordered

    def all(self) -> list[RuleRecord]:
        return sorted(self._records.values(), key=lambda r: r.rule.id)


def wants(rules: Sequence[Rule], event: RawEvent) -> bool:
    """Whether any rule's type and source filters let the event through."""
    return any(
        (not r.when.event_types or event.type in r.when.event_types)
        and (not r.when.sources or event.source_id in r.when.sources)
        for r in rules
    )


@dataclass(frozen=True)
class Item:
    event: RawEvent
    message: Message


@dataclass(frozen=True)
class Outgoing:
    """A record for Kafka: topic, key, value, headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    outcome: ActionOutcome | None = None  # for messages to other topics: recorded as produced


@dataclass
class BatchPlan:
    """What one batch decided; built by :func:`plan_batch`, pure."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # changed, canonical id
    trait_times: dict[str, dict[str, str]] = field(default_factory=dict)  # when traits changed
    runs: list[RunRow] = field(default_factory=list)
    results: list[tuple[str, WorkflowResult]] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    calls: list[WebhookCall] = field(default_factory=list)
    duplicates: int = 0


def plan_batch(
    rules: Sequence[Rule],
    items: Sequence[Item],
    profiles: Mapping[str, Mapping[str, Any]],
    sessions: Mapping[str, Mapping[str, Any]],
    done: set[str],
    now: datetime,
    max_emit_depth: int,
    canonical: Mapping[str, str] | None = None,
) -> BatchPlan:
    """Evaluate the items in order; each sees its (canonical) profile as the earlier items
    left it. ``profiles`` are keyed by canonical id; ``canonical`` maps an event's profile id
    to it (an id missing from it is its own)."""
    plan = BatchPlan()
    state = {pid: to_json(row) for pid, row in profiles.items()}
    for item in items:
        event = item.event
        if event.id in done:
            plan.duplicates += 1
            continue
        done.add(event.id)  # the same event twice in one batch runs once
        root = (canonical or {}).get(event.profile_id, event.profile_id)
        if event.profile_less:  # evaluated against no profile and no session
            result = evaluate(rules, event, {}, None, max_emit_depth=max_emit_depth)
            result = _without_profile(result)
        else:
            profile = state.get(root) or {"id": root}
            session = sessions.get(event.session_id) if event.session_id else None
            result = evaluate(
                rules, event, profile, to_json(session), max_emit_depth=max_emit_depth
            )
        patch = result.profile_patch
        if patch.ops:
            state[root] = apply_patch(profile, patch)
            plan.profiles[root] = state[root]
            times = plan.trait_times.setdefault(root, {})
            for op in patch.ops:
                if not isinstance(op, AddTags | RemoveTags):
                    times[op.trait.split(".")[0]] = event.received_at.isoformat()
        plan.runs.append(
            RunRow(
                event.id,
                event.profile_id,
                result.matched_rules,
                result.stopped_by,
                item.message.partition,
                item.message.offset,
            )
        )
        plan.results.append((event.id, result))
        _outgoing(plan, result, now)
    return plan


def _outgoing(plan: BatchPlan, result: WorkflowResult, now: datetime) -> None:
    for action in result.actions:
        if isinstance(action, EmitEvent):
            emitted = action.event
            plan.outgoing.append(Outgoing(EVENTS_RAW, emitted.profile_id.encode(), encode(emitted)))
        elif isinstance(action, WebhookCall):
            request = WebhookDelivery(call=action, attempt=1, due_at=now)
            plan.outgoing.append(
                Outgoing(WEBHOOKS, action.idempotency_key.encode(), encode(request))
            )
            plan.calls.append(action)
        elif isinstance(action, ProduceMessage):
            outcome = _outcome_of(result, action.rule_id, action.action_index)
            plan.outgoing.append(
                Outgoing(
                    action.topic,
                    action.key.encode(),
                    orjson.dumps(action.value),
                    (("Idempotency-Key", action.idempotency_key.encode()),),
                    outcome,
                )
            )


_NO_PROFILE = "a profile-less event has no profile to change"


def _without_profile(result: WorkflowResult) -> WorkflowResult:
    """A profile-less event's result: its profile actions failed, naming why."""
    outcomes = tuple(
        o.model_copy(update={"status": "failed", "error": _NO_PROFILE})
        if o.action in _PROFILE_ACTIONS and o.status == "planned"
        else o
        for o in result.outcomes
    )
    actions = tuple(a for a in result.actions if not isinstance(a, PatchProfile))
    return result.model_copy(update={"actions": actions, "outcomes": outcomes})


def _outcome_of(result: WorkflowResult, rule_id: str, index: int) -> ActionOutcome | None:
    return next(
        (o for o in result.outcomes if o.rule_id == rule_id and o.action_index == index), None
    )


_DONE_STATUS = {
    "tag": "applied",
    "untag": "applied",
    "set_trait": "applied",
    "unset_trait": "applied",
    "increment_trait": "applied",
    "append_trait": "applied",
    "emit_event": "emitted",
    "webhook": "queued",
    "produce": "produced",
}
_PROFILE_ACTIONS = frozenset(kind for kind, done in _DONE_STATUS.items() if done == "applied")


def outcome_rows(
    plan: BatchPlan, produce_errors: Mapping[tuple[str, int, str], str]
) -> list[OutcomeRow]:
    """Every action's outcome as stored: planned actions as what was done with them."""
    rows = []
    for event_id, result in plan.results:
        for o in result.outcomes:
            error = o.error or produce_errors.get((o.rule_id, o.action_index, event_id))
            status: str = o.status
            if o.status == "planned":
                status = "failed" if error else _DONE_STATUS.get(o.action, "applied")
            rows.append(OutcomeRow(event_id, o, status, error))
    return rows


Send = Callable[[Sequence[Outgoing]], Awaitable[list[BaseException | None]]]
SendFailed = Callable[[Sequence[FailedEvent]], Awaitable[None]]
Decode = Callable[[bytes | None], RawEvent]


class WorkflowStep:
    def __init__(
        self,
        store: WorkflowStore,
        rules: RuleRegistry,
        decode: Decode,
        send: Send,
        send_failed: SendFailed,
        metrics: WorkerMetrics,
        retry_cap: float,
        clock: Callable[[], datetime],
        max_emit_depth: int = 3,
    ) -> None:
        self._store = store
        self._rules = rules
        self._decode = decode
        self._send = send
        self._send_failed = send_failed
        self._metrics = metrics
        self._retry_cap = retry_cap
        self._clock = clock
        self._max_emit_depth = max_emit_depth

    async def __call__(self, batch: Sequence[Message]) -> None:
        rules = self._rules.enabled()
        if not rules:
            self._metrics.stage_events.labels(STAGE, "skipped").inc(len(batch))
            return
        items = self._items(batch, rules)
        self._metrics.stage_events.labels(STAGE, "skipped").inc(len(batch) - len(items))
        if not items:
            return
        try:
            plans = [await self._retrying(rules, items)]
        except InvalidEvent:
            plans = await self._one_by_one(rules, items)
        for plan in plans:
            self._observe(plan)

    def _items(self, batch: Sequence[Message], rules: Sequence[Rule]) -> list[Item]:
        items = []
        for message in batch:
            try:
                event = self._decode(message.value)
            except InvalidMessage:
                continue  # the store records it as a failed event; recording it twice helps no one
            if wants(rules, event):
                items.append(Item(event, message))
        return items

    async def _run(self, rules: Sequence[Rule], items: Sequence[Item]) -> BatchPlan:
        first_seen: dict[str, datetime] = {}
        for item in items:
            if not item.event.profile_less:
                first_seen.setdefault(item.event.profile_id, item.event.received_at)
        sessions = sorted({i.event.session_id for i in items if i.event.session_id})
        async with self._store.transaction() as tx:
            profiles, canonical = await tx.lock_profiles(first_seen)
            done = await tx.done_events([i.event.id for i in items])
            plan = plan_batch(
                rules,
                items,
                profiles,
                await tx.read_sessions(sessions),
                done,
                self._clock(),
                self._max_emit_depth,
                canonical,
            )
            await tx.write_profiles(plan.profiles, plan.trait_times)
            await tx.record_runs(plan.runs, plan.calls)
            errors = await self._publish(plan)  # after the writes PostgreSQL could refuse
            await tx.record_outcomes(outcome_rows(plan, errors))
        return plan

    async def _one_by_one(self, rules: Sequence[Rule], items: Sequence[Item]) -> list[BatchPlan]:
        """PostgreSQL refused the batch: run each event alone; record the refused ones."""
        plans, failures = [], []
        for item in items:
            try:
                plans.append(await self._retrying(rules, [item]))
            except InvalidEvent as exc:
                e = item.event
                failures.append(failed_event(STAGE, item.message, exc.reason, exc.code, e.id))
        if failures:
            await self._send_failed(failures)
        return plans

    async def _retrying(self, rules: Sequence[Rule], items: Sequence[Item]) -> BatchPlan:
        return await retry_while_retriable(
            lambda: self._run(rules, items), "workflow batch", self._retry_cap
        )

    async def _publish(self, plan: BatchPlan) -> dict[tuple[str, int, str], str]:
        """Send everything; pipeline topics must succeed, other topics may fail (recorded)."""
        results = await self._send(plan.outgoing)
        errors: dict[tuple[str, int, str], str] = {}
        for out, error in zip(plan.outgoing, results, strict=True):
            if error is None:
                continue
            if out.outcome is None:
                raise error
            event_id = _event_of(plan, out.outcome)
            errors[(out.outcome.rule_id, out.outcome.action_index, event_id)] = (
                f"could not produce to {out.topic}: {error!r}"[:500]
            )
        return errors

    def _observe(self, plan: BatchPlan) -> None:
        m = self._metrics
        m.stage_events.labels(STAGE, "ok").inc(len(plan.runs))
        m.stage_events.labels(STAGE, "duplicate").inc(plan.duplicates)
        for _, result in plan.results:
            for rule_id in result.matched_rules:
                m.rule_matches.labels(rule_id).inc()


def _event_of(plan: BatchPlan, outcome: ActionOutcome) -> str:
    for event_id, result in plan.results:
        if outcome in result.outcomes:
            return event_id
    return ""
