"""The webhook retry policy, for the deliverer: which answers are worth retrying and how long
to wait (capped exponential backoff with full jitter). Every attempt of a call sends the same
``Idempotency-Key`` header, the call's ``idempotency_key``."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["IDEMPOTENCY_HEADER", "is_retriable_status", "retry_delay"]

IDEMPOTENCY_HEADER = "Idempotency-Key"


def is_retriable_status(status: int) -> bool:
    """408, 425, 429 and 5xx are retried; any other answer is final (2xx done, 4xx dead)."""
    return status in (408, 425, 429) or 500 <= status <= 599


def retry_delay(
    attempt: int,
    *,
    base_seconds: float = 1.0,
    cap_seconds: float = 600.0,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): uniform in
    ``[0, min(cap, base * 2**(attempt-1))]``, but never less than a server's Retry-After."""
    ceiling = min(cap_seconds, base_seconds * 2.0 ** min(max(attempt - 1, 0), 62))
    delay = ceiling * rng()
    return min(cap_seconds, max(delay, retry_after or 0.0))
