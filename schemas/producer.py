"""Building a valid raw-topic message in a backend service that produces to Kafka directly.

    from aiokafka import AIOKafkaProducer
    from schemas.producer import raw_event_message
    from schemas.topics import EVENTS_RAW

    key, value = raw_event_message("invoice-paid", profile_id="p-42", source_id="billing",
                                   properties={"amount": 120.0})
    await producer.send_and_wait(EVENTS_RAW, key=key, value=value)

Use an idempotent producer with ``acks="all"``; send the same ``event_id`` when retrying,
and the event is stored once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.codec import encode
from schemas.envelope import RawEvent

__all__ = ["raw_event_message"]


def raw_event_message(
    event_type: str,
    *,
    profile_id: str,
    source_id: str,
    properties: dict[str, Any] | None = None,
    session_id: str | None = None,
    event_id: str | None = None,
    received_at: datetime | None = None,
    context: dict[str, Any] | None = None,
    tags: list[str] | None = None,
) -> tuple[bytes, bytes]:
    """``(key, value)`` for ``trackflow.events.raw.v1``: keyed by profile id, JSON value."""
    event = RawEvent(
        id=event_id or str(uuid.uuid4()),
        type=event_type,
        source_id=source_id,
        profile_id=profile_id,
        session_id=session_id,
        received_at=received_at or datetime.now(UTC),
        properties=properties or {},
        context=context or {},
        tags=tags or [],
        protocol="kafka",
    )
    return profile_id.encode(), encode(event)
