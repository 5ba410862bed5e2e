"""The compacted config topic: writing records and following them into memory.

The gateway (and later the workers) read the topic from the beginning at start-up, so a
process never serves with a partial view, then follow it so that a new or disabled source
takes effect within seconds without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from schemas.config import ConfigRecord, EventSource, config_key, parse_config_record
from schemas.rules import RuleRecord
from schemas.topics import CONFIG

__all__ = [
    "ConfigFollower",
    "ConfigTopicMissing",
    "SourceRegistry",
    "publish_config",
    "read_config",
    "read_config_records",
]

log = logging.getLogger(__name__)
_PARTITION = TopicPartition(CONFIG, 0)


class ConfigTopicMissing(RuntimeError):
    pass


async def publish_config(bootstrap: str, record: ConfigRecord | RuleRecord) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            CONFIG, key=config_key(record), value=record.model_dump_json().encode()
        )
    finally:
        await producer.stop()


async def read_config(bootstrap: str) -> list[ConfigRecord]:
    """Every current source record (the latest per key), read once to the end of the topic."""
    return [r for r in await read_config_records(bootstrap) if isinstance(r, ConfigRecord)]


async def read_config_records(bootstrap: str) -> list[ConfigRecord | RuleRecord]:
    """Every current record of any kind (the latest per key), read once to the end."""
    latest: dict[bytes, ConfigRecord | RuleRecord] = {}
    follower = ConfigFollower(bootstrap, lambda r: latest.__setitem__(config_key(r), r))
    await follower.start(follow=False)
    await follower.stop()
    return list(latest.values())


class ConfigFollower:
    def __init__(self, bootstrap: str, apply: Callable[[ConfigRecord | RuleRecord], None]) -> None:
        self._apply = apply
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self.caught_up = False

    async def start(self, follow: bool = True) -> None:
        """Read to the end of the topic, then (``follow``) keep reading in the background.
        Several callers may start it concurrently: the first starts it, the others wait."""
        async with self._starting:
            if not self.caught_up:
                await self._start(follow)

    async def _start(self, follow: bool) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        if CONFIG not in await consumer.topics():
            await consumer.stop()
            raise ConfigTopicMissing(f"topic {CONFIG} does not exist; run `trackflow topics`")
        consumer.assign([_PARTITION])
        await consumer.seek_to_beginning(_PARTITION)
        end = (await consumer.end_offsets([_PARTITION]))[_PARTITION]
        while await consumer.position(_PARTITION) < end:
            await self._poll_once()
        self.caught_up = True
        if follow:
            self._task = asyncio.create_task(self._follow(), name="config-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            await self._poll_once()

    async def _poll_once(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                self._apply_message(message)

    def _apply_message(self, message: ConsumerRecord[bytes, bytes]) -> None:
        if message.value is None:
            return
        try:
            record = parse_config_record(message.value)
        except ValidationError as exc:
            log.error("skipping invalid config record at offset %s: %s", message.offset, exc)
            return
        self._apply(record)


class SourceRegistry:
    """The latest record for each source id, as read from the config topic."""

    def __init__(self, sources: list[EventSource] | None = None) -> None:
        self._sources = {s.id: s for s in sources or []}

    def apply(self, record: ConfigRecord | RuleRecord) -> None:
        if isinstance(record, ConfigRecord):
            self.put(record.source)

    def put(self, source: EventSource) -> None:
        current = self._sources.get(source.id)
        if current is None or current.updated_at <= source.updated_at:
            self._sources[source.id] = source

    def get(self, source_id: str) -> EventSource | None:
        return self._sources.get(source_id)

    def all(self) -> list[EventSource]:
        return sorted(self._sources.values(), key=lambda s: s.id)
