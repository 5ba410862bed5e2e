"""Creating trackflow's topics (``trackflow topics``, ``trackflow up``)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import ALL_TOPICS, TopicSpec

__all__ = ["ensure_topics"]


async def ensure_topics(bootstrap: str, partitions: int, replication: int = 1) -> list[str]:
    """Create every missing topic; return the names created (existing ones are left as is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in ALL_TOPICS if spec.name not in existing]
        if missing:
            new = [_new_topic(s, partitions, replication) for s in missing]
            response = await admin.create_topics(new)
            _raise_for_errors(response)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


def _new_topic(spec: TopicSpec, partitions: int, replication: int) -> NewTopic:
    configs = {"cleanup.policy": "compact"} if spec.compacted else {}
    return NewTopic(
        name=spec.name,
        num_partitions=1 if spec.single_partition else partitions,
        replication_factor=replication,
        topic_configs=configs,
    )


def _raise_for_errors(response: object) -> None:
    for entry in getattr(response, "topic_errors", []):
        name, code = entry[0], entry[1]
        if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator won)
            message = entry[2] if len(entry) > 2 else ""
            raise RuntimeError(f"could not create topic {name}: error code {code} {message}")
