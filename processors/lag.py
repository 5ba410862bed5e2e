"""Consumer lag, measured the way Kafka's own tools do: log end offset minus committed offset."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

__all__ = ["LagProbe"]


class LagProbe:
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def started(self) -> bool:
        return self._admin is not None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None)
        try:
            await consumer.start()
        except BaseException:
            await admin.close()
            raise
        self._admin, self._consumer = admin, consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def ping(self, timeout: float = 2.0) -> tuple[bool, str]:
        """Whether the cluster answers a metadata request within ``timeout``."""
        try:
            if not self.started:
                await asyncio.wait_for(self.start(), timeout)
            assert self._admin is not None
            await asyncio.wait_for(self._admin.describe_cluster(), timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            return False, f"kafka unreachable: {exc!r}"
        return True, "ok"

    async def measure(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """Lag per partition of ``topics`` for consumer group ``group`` (no commit: all)."""
        assert self._admin is not None and self._consumer is not None
        described = await self._admin.describe_topics(list(topics))
        partitions = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            if topic.get("error_code", 0) == 0
            for p in topic["partitions"]
        ]
        if not partitions:
            return {}
        ends = await self._consumer.end_offsets(partitions)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
        lags = {}
        for tp in partitions:
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
            lags[tp] = max(0, ends[tp] - done)
        return lags
