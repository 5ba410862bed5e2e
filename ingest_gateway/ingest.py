"""Tracardi's ``/track`` payload (and ``/collect``) into raw events: each event checked on
its own, ids assigned or echoed. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from ingest_gateway.batch import Rejected, reject_all, rejected_from_validation
from ingest_gateway.errors import InvalidPayload
from ingest_gateway.publisher import Record
from schemas import RawEvent, RequestInfo, TrackEvent, TrackPayload, encode
from schemas.codec import describe_validation_error
from schemas.topics import EVENTS_RAW

__all__ = ["Accepted", "IdFactory", "accept_track", "parse_track", "to_records"]

IdFactory = Callable[[], str]


@dataclass(frozen=True)
class Accepted:
    profile_id: str
    session_id: str
    events: Sequence[RawEvent]
    rejected: Sequence[Rejected] = ()
    profile_less: bool = False

    def response(self) -> dict[str, object]:
        """Tracardi's response shape, which its tracker and trackflow's read; ``rejected``
        lists the events of the batch that were not accepted, by index."""
        return {
            "profile": None if self.profile_less else {"id": self.profile_id},
            "session": {"id": self.session_id},
            "events": [e.id for e in self.events],
            "errors": [r.message for r in self.rejected],
            "warnings": [],
            "ux": [],
            "response": {},
            "rejected": [r.as_dict() for r in self.rejected],
        }


class _TrackEnvelope(TrackPayload):
    """``TrackPayload`` with its events unchecked, so that each is checked on its own."""

    events: list[Any] = Field(min_length=1)


def parse_track(body: Any, max_events: int) -> tuple[TrackPayload, list[Rejected]]:
    """The payload with its valid events, and each invalid event by index. The whole request
    fails (422) when the envelope is invalid or no event is valid."""
    if not isinstance(body, dict):
        raise InvalidPayload(f"expected a JSON object, got {type(body).__name__}")
    events = body.get("events")
    if isinstance(events, list) and len(events) > max_events:
        raise InvalidPayload(
            f"events: at most {max_events} events per request (got {len(events)})",
            [{"field": "events", "message": f"at most {max_events} events"}],
        )
    try:
        return TrackPayload.model_validate(body), []
    except ValidationError as exc:
        error = exc
    try:
        envelope = _TrackEnvelope.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    good: list[TrackEvent] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(envelope.events):
        try:
            good.append(TrackEvent.model_validate(raw))
        except ValidationError as exc:
            item = rejected_from_validation(index, "events", exc)
            rejected.append(Rejected(index, item.message, 422, "invalid_payload"))
    if not good:
        raise reject_all(rejected) if rejected else _invalid(error)
    return envelope.model_copy(update={"events": good}), rejected


def _invalid(exc: ValidationError) -> InvalidPayload:
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    return InvalidPayload(describe_validation_error(exc), details)


def accept_track(
    payload: TrackPayload,
    request: RequestInfo,
    *,
    new_id: IdFactory,
    now: datetime,
    rejected: Sequence[Rejected] = (),
    profile_less: bool = False,
    protocol: Literal["tracardi", "collect"] = "tracardi",
) -> Accepted:
    """Raw events with ids assigned or echoed. ``profile_less``: no profile is sent back and
    the events are keyed by a fresh id and marked ``options.profile_less``."""
    if profile_less:
        profile_id = new_id()
    else:
        profile_id = (payload.profile.id if payload.profile else None) or new_id()
    session_id = (payload.session.id if payload.session else None) or new_id()
    less = {"profile_less": True} if profile_less else {}
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
            options={**payload.options, **event.options, **less},
            tags=list(event.tags),
            request=request,
            protocol=protocol,
        )
        for event in payload.events
    ]
    return Accepted(profile_id, session_id, events, rejected, profile_less)


def to_records(events: Sequence[RawEvent]) -> list[Record]:
    """One record per event on the raw topic, keyed by profile id (order per profile)."""
    return [Record(EVENTS_RAW, e.profile_id.encode(), encode(e)) for e in events]
