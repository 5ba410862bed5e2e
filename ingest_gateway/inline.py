"""Inline mode (``trackflow gateway --inline``): every stage inside the request, no Kafka.

The gateway answers only after PostgreSQL committed the events, the way Tracardi's
open-source version works. Useful for small sites, and the baseline that the streaming
pipeline is measured against. It reuses the store stage's pure planning and its adapter;
sources come from the PostgreSQL mirror of the config topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from ingest_gateway.publisher import PublishFailed, Record
from ingest_gateway.sources import SourceRegistry
from processors.errors import StageError
from processors.postgres import PostgresStore
from processors.store import Located, plan_event_rows
from schemas import InvalidMessage, RawEvent, decode_raw_event

__all__ = ["InlinePublisher", "PostgresSourcePoller"]

log = logging.getLogger(__name__)
INLINE = -1  # partition and offset of events that never went through Kafka


class InlinePublisher:
    def __init__(self, store: PostgresStore, stages: Callable[[RawEvent], RawEvent]) -> None:
        self._store = store
        self._stages = stages

    async def start(self) -> None:
        await self._store.start()

    async def stop(self) -> None:
        await self._store.stop()

    async def publish(self, records: Sequence[Record]) -> None:
        try:
            events = [self._stages(decode_raw_event(r.value)) for r in records]
        except InvalidMessage as exc:
            raise PublishFailed(f"invalid event: {exc.reason}") from exc
        except StageError as exc:
            raise PublishFailed(f"[{exc.stage}] {exc.reason}") from exc
        rows, rejected = plan_event_rows([Located(e, INLINE, INLINE) for e in events])
        if rejected:
            raise PublishFailed(f"event {rejected[0][0].event.id}: {rejected[0][1].reason}")
        try:
            await self._store.write_events(rows)
        except StageError as exc:
            raise PublishFailed(exc.reason) from exc

    async def is_ready(self) -> tuple[bool, str]:
        return await self._store.ping()


class PostgresSourcePoller:
    """Keeps a SourceRegistry in step with the ``sources`` table (the config mirror)."""

    def __init__(self, store: PostgresStore, sources: SourceRegistry, interval: float = 2.0):
        self._store = store
        self._sources = sources
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._follow(), name="sources-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._refresh()
            except Exception as exc:  # an outage must not stop the poller
                log.warning("could not read sources from PostgreSQL: %s", exc)

    async def _refresh(self) -> None:
        for source in await self._store.read_sources():
            self._sources.put(source)
