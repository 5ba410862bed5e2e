"""A gateway over TestClient with an in-memory publisher and a few sources."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from ingest_gateway import create_app
from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.sources import SourceRegistry
from schemas import EventSource, RawEvent, decode_raw_event
from schemas.config import hash_write_key
from trackflow.settings import Settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WRITE_KEY = "wk-shop-123"


def source(source_id: str, **kw: object) -> EventSource:
    return EventSource(id=source_id, name=source_id, updated_at=NOW, **kw)  # type: ignore[arg-type]


def published(publisher: InMemoryPublisher) -> list[RawEvent]:
    return [decode_raw_event(r.value) for r in publisher.records]


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def client(publisher: InMemoryPublisher) -> Iterator[TestClient]:
    sources = SourceRegistry(
        [
            source("web"),
            source("off", enabled=False),
            source("app", allowed_origins=("https://app.example",)),
            source(
                "shop",
                write_key_sha256=hash_write_key(WRITE_KEY),
                allowed_origins=("https://shop.example",),
            ),
        ]
    )
    counter = itertools.count(1)
    app = create_app(
        Settings(max_events_per_request=20),
        publisher=publisher,
        sources=sources,
        new_id=lambda: f"id-{next(counter)}",
        clock=lambda: NOW,
    )
    with TestClient(app) as c:
        yield c
