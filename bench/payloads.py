"""What the benchmark sends and writes: Tracardi bodies, raw events and their rows.

Every generator here is deterministic apart from the ids the gateway would assign, and
spreads the load over ``PROFILES`` profiles (one session each), as real traffic does, so
that records spread over the topic's partitions and profile upserts hit existing rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ingest_gateway.ingest import accept_track, to_records
from ingest_gateway.publisher import Record
from processors.store import EventRow, Located, plan_event_rows
from schemas import RawEvent, RequestInfo, TrackPayload

__all__ = [
    "PROFILES",
    "SOURCE_ID",
    "event_rows",
    "fresh_rows",
    "raw_events",
    "records",
    "track_body",
    "write_bodies",
]

SOURCE_ID = "bench-site"
PROFILES = 1000
_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


def _profile(i: int) -> str:
    return f"bench-profile-{i % PROFILES:05d}"


def _session(i: int) -> str:
    return f"bench-session-{i % PROFILES:05d}"


def _event(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "page-view" if i % 5 else "add-to-cart",
        "properties": {
            "url": f"https://shop.example/products/{i % 97}",
            "title": "Product page",
            "price": 19.99 + i % 7,
            "bench_run": run,
        },
        "context": {"page": {"referrer": "https://search.example/?q=shoes"}},
        "tags": ["bench"],
    }


def track_body(i: int, events: int, run: str) -> dict[str, Any]:
    """A ``POST /track`` body with ``events`` events for profile ``i`` (mod PROFILES)."""
    return {
        "source": {"id": SOURCE_ID},
        "profile": {"id": _profile(i)},
        "session": {"id": _session(i)},
        "context": {
            "browser": {"language": "en-GB", "screen": {"width": 1920, "height": 1080}},
            "page": {"url": "https://shop.example/", "title": "Shop"},
        },
        "events": [_event(i * events + n, run) for n in range(events)],
    }


def write_bodies(path: Path, events: int, run: str, count: int = PROFILES) -> Path:
    """``count`` bodies, one JSON object a line, for the load generator to send in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(orjson.dumps(track_body(i, events, run)) for i in range(count)))
    return path


def raw_events(count: int, run: str) -> list[RawEvent]:
    """``count`` raw events exactly as the gateway makes them from single-event requests."""
    request = RequestInfo(ip="127.0.0.1", user_agent=_USER_AGENT, accept_language="en-GB")
    now = datetime.now(UTC)
    found: list[RawEvent] = []
    for i in range(count):
        payload = TrackPayload.model_validate(track_body(i, 1, run))
        accepted = accept_track(payload, request, new_id=lambda: str(uuid.uuid4()), now=now)
        found.extend(accepted.events)
    return found


def records(events: list[RawEvent], topic: str) -> list[Record]:
    """The gateway's records for these events (``to_records``), sent to ``topic`` instead."""
    return [Record(topic, r.key, r.value) for r in to_records(events)]


def event_rows(events: list[RawEvent]) -> list[EventRow]:
    """The store stage's rows for these events (``plan_event_rows``)."""
    located = [Located(e, i % 6, i) for i, e in enumerate(events)]
    rows, rejected = plan_event_rows(located)
    if rejected:
        raise RuntimeError(f"the store stage rejected {len(rejected)} benchmark rows")
    return rows


def fresh_rows(template: list[EventRow], size: int, prefix: str) -> Iterator[list[EventRow]]:
    """Endless batches of ``size`` rows from ``template``, each row with a new event id."""
    n = 0
    while True:
        batch: list[EventRow] = []
        for _ in range(size):
            row = template[n % len(template)]
            batch.append((f"{prefix}-{n}", *row[1:]))
            n += 1
        yield batch
