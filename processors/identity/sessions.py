"""Which session an event belongs to. Pure; the clock is the event's ``received_at``.

Given the profile's last session, an event

* starts a session when there is none (``first``), when it names a session id other than
  the one the client sent before (``new_id``), or when ``timeout`` or more has passed since
  the session's last event (``timeout``: exactly 30 minutes of silence ends a 30-minute
  session);
* otherwise continues it (``continued``). An event older than the last one (clocks of two
  gateways disagree, a late delivery) continues the session: ``last_seen_at`` never moves
  backwards, ``started_at`` moves back to the earliest event.

A session's id is the client's session id when it starts one; when the client keeps an id
past the timeout, or sends none, the new session's id is derived from the client's id and the
first event's id (``s`` + 32 hex digits), so replays derive the same id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from processors.identity.config import DEFAULT_SESSION_TIMEOUT
from schemas.identity import SessionState

__all__ = ["SessionChange", "SessionDecision", "decide_session", "derived_session_id"]

SessionChange = Literal["first", "new_id", "timeout", "continued"]


@dataclass(frozen=True)
class SessionDecision:
    session: SessionState
    change: SessionChange

    @property
    def is_new(self) -> bool:
        return self.change != "continued"


def derived_session_id(client_session_id: str | None, event_id: str) -> str:
    seed = f"{client_session_id or ''}\x00{event_id}".encode()
    return "s" + hashlib.sha256(seed).hexdigest()[:32]


def decide_session(
    last: SessionState | None,
    *,
    profile_id: str,
    event_id: str,
    client_session_id: str | None,
    at: datetime,
    timeout: timedelta = DEFAULT_SESSION_TIMEOUT,
) -> SessionDecision:
    if last is None or last.profile_id != profile_id:
        return _start(profile_id, event_id, client_session_id, at, "first")
    if client_session_id is not None and client_session_id != last.client_session_id:
        return _start(profile_id, event_id, client_session_id, at, "new_id")
    if at - last.last_seen_at >= timeout:
        return _start(profile_id, event_id, client_session_id, at, "timeout")
    continued = last.model_copy(
        update={
            "started_at": min(last.started_at, at),
            "last_seen_at": max(last.last_seen_at, at),
            "event_count": last.event_count + 1,
        }
    )
    return SessionDecision(continued, "continued")


def _start(
    profile_id: str,
    event_id: str,
    client_session_id: str | None,
    at: datetime,
    change: SessionChange,
) -> SessionDecision:
    session_id = (
        client_session_id
        if client_session_id is not None and change != "timeout"
        else derived_session_id(client_session_id, event_id)
    )
    session = SessionState(
        id=session_id,
        profile_id=profile_id,
        client_session_id=client_session_id,
        started_at=at,
        last_seen_at=at,
        event_count=1,
    )
    return SessionDecision(session, change)
