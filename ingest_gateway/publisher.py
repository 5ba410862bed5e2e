"""Publishing to Kafka: the one I/O on the gateway's hot path.

``publish`` returns only when the broker has acknowledged every record (idempotent
producer, ``acks=all``); otherwise it raises :class:`PublishFailed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

__all__ = [
    "InMemoryPublisher",
    "KafkaPublisher",
    "PublishFailed",
    "Publisher",
    "Record",
    "RecordTooLarge",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes


class PublishFailed(Exception):
    """The broker did not acknowledge every record in time; the client should retry."""


class RecordTooLarge(Exception):
    """The broker refuses a record this large; retrying cannot help."""


class Publisher(Protocol):
    async def publish(self, records: Sequence[Record]) -> None: ...
    async def is_ready(self) -> tuple[bool, str]: ...


class KafkaPublisher:
    def __init__(self, bootstrap: str, timeout: float, linger_ms: int = 5) -> None:
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None

    async def start(self, retry_seconds: float = 60.0) -> None:
        """Connect, retrying while the broker comes up; raise after ``retry_seconds``."""
        self._producer = AIOKafkaProducer(  # needs the running loop, so made here
            bootstrap_servers=self._bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=self._linger_ms,
            request_timeout_ms=max(1000, int(self._timeout * 1000)),
            max_request_size=4 * 1024 * 1024,
            max_batch_size=256 * 1024,
        )
        deadline = asyncio.get_running_loop().time() + retry_seconds
        while True:
            try:
                await self.producer.start()
                return
            except KafkaError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("kafka not reachable yet (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaPublisher.start() was not awaited")
        return self._producer

    async def publish(self, records: Sequence[Record]) -> None:
        try:
            async with asyncio.timeout(self._timeout):  # no extra task, unlike wait_for
                await self._send_all(records)
        except MessageSizeTooLargeError as exc:
            raise RecordTooLarge(str(exc)) from exc
        except (TimeoutError, KafkaError) as exc:
            raise PublishFailed(f"kafka did not acknowledge the write: {exc!r}") from exc

    async def _send_all(self, records: Sequence[Record]) -> None:
        futures = [await self.producer.send(r.topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)

    async def is_ready(self) -> tuple[bool, str]:
        client = self.producer.client
        try:
            await asyncio.wait_for(client.fetch_all_metadata(), 2.0)
        except (TimeoutError, KafkaError) as exc:
            return False, f"kafka unreachable: {exc!r}"
        return True, "ok"


@dataclass
class InMemoryPublisher:
    """Stand-in for unit and wiring tests: keeps what it was given, or fails on demand."""

    records: list[Record] = field(default_factory=list)
    fail: bool = False

    async def publish(self, records: Sequence[Record]) -> None:
        if self.fail:
            raise PublishFailed("in-memory publisher set to fail")
        self.records.extend(records)

    async def is_ready(self) -> tuple[bool, str]:
        return (not self.fail, "ok" if not self.fail else "publisher set to fail")
