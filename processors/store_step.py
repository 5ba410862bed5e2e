"""The store step between Kafka and PostgreSQL: decode, plan rows, write, route failures.

It returns only once every message of the batch is either stored or recorded as failed,
so the caller may then acknowledge the offsets. PostgreSQL outages are retried here with
backoff; nothing is acknowledged while they last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from processors.errors import InvalidEvent
from processors.metrics import WorkerMetrics
from processors.postgres import PostgresStore
from processors.retry import retry_while_retriable
from processors.store import (
    ROW_OFFSET,
    ROW_PARTITION,
    STAGE,
    EventRow,
    Located,
    plan_event_rows,
)
from schemas import FailedEvent, InvalidMessage, RawEvent

__all__ = ["Message", "StoreStep", "failed_event"]

log = logging.getLogger(__name__)

SendFailed = Callable[[Sequence[FailedEvent]], Awaitable[None]]
Decode = Callable[[bytes | None], RawEvent]


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class StoreStep:
    def __init__(
        self,
        store: PostgresStore,
        decode: Decode,
        send_failed: SendFailed,
        metrics: WorkerMetrics,
        retry_cap: float,
    ) -> None:
        self._store = store
        self._decode_one = decode
        self._send_failed = send_failed
        self._metrics = metrics
        self._retry_cap = retry_cap

    async def __call__(self, batch: Sequence[Message]) -> int:
        """Store a batch; return the number of events that were new."""
        located, failures = self._decode(batch)
        rows, rejected = plan_event_rows(located)
        failures += [
            failed_event(
                STAGE,
                _find(batch, item.partition, item.offset),
                exc.reason,
                exc.code,
                item.event.id,
            )
            for item, exc in rejected
        ]
        if failures:
            await self._send_failed(failures)
        try:
            stored = await self._write(rows)
        except InvalidEvent:
            stored = await self._write_one_by_one(batch, rows)
        self._observe(located, len(batch), stored)
        return stored

    def _observe(self, located: Sequence[Located], size: int, stored: int) -> None:
        m = self._metrics
        m.store_batch_size.observe(size)
        m.stage_events.labels(STAGE, "ok").inc(stored)
        m.stage_events.labels(STAGE, "duplicate").inc(max(0, len(located) - stored))
        now = datetime.now(UTC)
        for item in located:
            m.end_to_end_seconds.observe((now - item.event.received_at).total_seconds())

    async def _write(self, rows: Sequence[EventRow]) -> int:
        if not rows:
            return 0
        started = time.perf_counter()
        stored = await retry_while_retriable(
            lambda: self._store.write_events(rows), "store batch", self._retry_cap
        )
        self._metrics.store_write_seconds.observe(time.perf_counter() - started)
        return stored

    async def _write_one_by_one(self, batch: Sequence[Message], rows: Sequence[EventRow]) -> int:
        """PostgreSQL rejected the batch: find the rows it rejects, and route only those."""
        stored = 0
        for row in rows:
            try:
                stored += await self._write([row])
            except InvalidEvent as exc:
                origin = _find(batch, int(row[ROW_PARTITION]), int(row[ROW_OFFSET]))  # type: ignore[arg-type]
                await self._send_failed([failed_event(STAGE, origin, exc.reason, exc.code, row[0])])
        return stored

    def _decode(self, batch: Sequence[Message]) -> tuple[list[Located], list[FailedEvent]]:
        located: list[Located] = []
        failures: list[FailedEvent] = []
        for message in batch:
            try:
                event = self._decode_one(message.value)
            except InvalidMessage as exc:
                failures.append(failed_event(STAGE, message, exc.reason, exc.code, None))
                continue
            located.append(Located(event, message.partition, message.offset))
        return located, failures


def _find(batch: Sequence[Message], partition: int, offset: int) -> Message:
    return next(m for m in batch if m.partition == partition and m.offset == offset)


def failed_event(
    stage: str, message: Message, reason: str, code: str, event_id: str | None
) -> FailedEvent:
    context = {
        "event_id": event_id,
        "stage": stage,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
    }
    log.error(
        "failed event_id=%s stage=%s topic=%s partition=%s offset=%s: %s",
        event_id,
        stage,
        message.topic,
        message.partition,
        message.offset,
        reason,
        extra=context,
    )
    return FailedEvent(
        stage=stage,
        reason=reason,
        code=code,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        event_id=event_id,
        failed_at=datetime.now(UTC),
        payload=_capped_payload(message.value or b""),
    )


MAX_FAILED_PAYLOAD = 100_000  # characters: even if each escapes to 6 bytes, under 1 MB


def _capped_payload(value: bytes) -> str:
    text = value.decode("utf-8", errors="replace")
    if len(text) <= MAX_FAILED_PAYLOAD:
        return text
    return text[:MAX_FAILED_PAYLOAD] + f"... [truncated; {len(value)} bytes in all]"
