"""The stages' errors. ``retriable`` decides between retrying and the failed-events topic.

StageError                  (stage, reason, event_id, retriable)
├── InvalidEvent            the message cannot be processed as it is -> failed events
└── StoreUnavailable        PostgreSQL unreachable -> retried with backoff, offsets held
"""

from __future__ import annotations

__all__ = ["InvalidEvent", "StageError", "StoreUnavailable"]


class StageError(Exception):
    retriable = False
    code = "stage_error"

    def __init__(self, stage: str, reason: str, event_id: str | None = None) -> None:
        super().__init__(f"[{stage}] {reason}" + (f" (event {event_id})" if event_id else ""))
        self.stage = stage
        self.reason = reason
        self.event_id = event_id


class InvalidEvent(StageError):
    code = "unstorable"


class StoreUnavailable(StageError):
    retriable = True
    code = "store_unavailable"
