"""Turning an accepted payload into raw events: ids assigned or echoed. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ingest_gateway.publisher import Record
from schemas import RawEvent, RequestInfo, TrackPayload, encode
from schemas.topics import EVENTS_RAW

__all__ = ["Accepted", "IdFactory", "accept_track", "to_records"]

IdFactory = Callable[[], str]


@dataclass(frozen=True)
class Accepted:
    profile_id: str
    session_id: str
    events: Sequence[RawEvent]

    def response(self) -> dict[str, object]:
        """Tracardi's response shape, which its tracker and trackflow's read."""
        return {
            "profile": {"id": self.profile_id},
            "session": {"id": self.session_id},
            "events": [e.id for e in self.events],
            "errors": [],
            "warnings": [],
            "ux": [],
            "response": {},
        }


def accept_track(
    payload: TrackPayload, request: RequestInfo, *, new_id: IdFactory, now: datetime
) -> Accepted:
    profile_id = (payload.profile.id if payload.profile else None) or new_id()
    session_id = (payload.session.id if payload.session else None) or new_id()
    events = [
        RawEvent(
            id=event.id or new_id(),
            type=event.type,
            source_id=payload.source.id,
            profile_id=profile_id,
            session_id=session_id,
            received_at=now,
            properties={**payload.properties, **event.properties},
            context={**payload.context, **event.context},
            options={**payload.options, **event.options},
            tags=list(event.tags),
            request=request,
            protocol="tracardi",
        )
        for event in payload.events
    ]
    return Accepted(profile_id, session_id, events)


def to_records(events: Sequence[RawEvent]) -> list[Record]:
    """One record per event on the raw topic, keyed by profile id (order per profile)."""
    return [Record(EVENTS_RAW, e.profile_id.encode(), encode(e)) for e in events]
