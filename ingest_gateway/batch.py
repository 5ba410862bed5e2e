"""Batches with some bad items: the good ones go on, each bad one is reported by index.

Every protocol that takes several events in one request (Tracardi ``/track``, Segment
``/v1/batch``, Snowplow ``tp2``) maps each item on its own; an item that cannot be mapped
becomes a :class:`Rejected` and the rest are published. When no item is left the whole
request fails: with the items' own status when they all share one (e.g. 401 for an unknown
Snowplow app id), otherwise with ``all_bad_status``. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ingest_gateway.errors import GatewayError

__all__ = ["BatchRejected", "Rejected", "reject_all", "rejected_from_validation"]


@dataclass(frozen=True)
class Rejected:
    """One item that was not accepted: where it was, why, and the status it would get alone."""

    index: int
    message: str
    status: int = 400
    code: str = "invalid_item"

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


class BatchRejected(GatewayError):
    """Every item of a batch was rejected; ``details`` lists each by index."""

    def __init__(self, status: int, code: str, message: str, items: Sequence[Rejected]) -> None:
        super().__init__(message, [r.as_dict() for r in items])
        self.status = status
        self.code = code


def rejected_from_validation(index: int, prefix: str, exc: ValidationError) -> Rejected:
    """The first few field errors of one item, each named by its path in the request
    (``prefix.index.field``; just ``field`` when the request is one item, ``prefix`` empty)."""
    parts = []
    for error in exc.errors()[:5]:
        path = (prefix, index, *error["loc"]) if prefix else error["loc"]
        field = ".".join(str(p) for p in path)
        parts.append(f"{field}: {error['msg']}")
    return Rejected(index, "; ".join(parts))


def reject_all(items: Sequence[Rejected], all_bad_status: int = 400) -> BatchRejected:
    statuses = {r.status for r in items}
    codes = {r.code for r in items}
    status = statuses.pop() if len(statuses) == 1 else all_bad_status
    code = codes.pop() if len(codes) == 1 else "invalid_batch"
    first = items[0].message if items else "no events"
    more = f" (and {len(items) - 1} more; see error.details)" if len(items) > 1 else ""
    return BatchRejected(status, code, f"no event was accepted: {first}{more}", items)
