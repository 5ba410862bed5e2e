"""A stage between two topics: decode each message, run the pure stage, encode the result.

No I/O here: the agent sends ``outputs`` to the next topic and ``failures`` to the
failed-events topic, waits for the broker to acknowledge both, and only then acknowledges
the batch it consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from processors.errors import StageError
from processors.store_step import Message, failed_event
from schemas import FailedEvent, InvalidMessage, RawEvent, encode

__all__ = ["ForwardStep", "Forwarded"]

Decode = Callable[[bytes | None], RawEvent]


@dataclass(frozen=True)
class Forwarded:
    outputs: list[tuple[bytes, bytes]]  # (key, value) for the next topic
    failures: list[FailedEvent]


class ForwardStep:
    def __init__(self, stage: str, decode: Decode, transform: Callable[[RawEvent], BaseModel]):
        self.stage = stage
        self._decode = decode
        self._transform = transform

    def __call__(self, batch: Sequence[Message]) -> Forwarded:
        outputs: list[tuple[bytes, bytes]] = []
        failures: list[FailedEvent] = []
        for message in batch:
            event_id = None
            try:
                event = self._decode(message.value)
                event_id = event.id
                result = self._transform(event)
                value = encode(result)
            except InvalidMessage as exc:
                failures.append(failed_event(self.stage, message, exc.reason, exc.code, None))
                continue
            except StageError as exc:
                failures.append(failed_event(self.stage, message, exc.reason, exc.code, event_id))
                continue
            except Exception as exc:  # one bad message must not stop the partition
                reason = f"{type(exc).__name__}: {exc}"[:500]
                failures.append(failed_event(self.stage, message, reason, "stage_error", event_id))
                continue
            outputs.append((event.profile_id.encode(), value))
        return Forwarded(outputs, failures)
