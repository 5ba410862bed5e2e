"""Per-source rate limits: a token bucket per source, refilled continuously. Pure; the clock
is passed in.

A source with ``rate_limit_per_second`` set may send that many events per second on average,
with bursts up to one second's worth; a request that would exceed it gets 429 and a
``Retry-After`` saying when enough tokens will be there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ingest_gateway.errors import RateLimited
from schemas.config import EventSource

__all__ = ["RateLimiter", "TokenBucket"]


@dataclass
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, n: float, now: float) -> float:
        """Take ``n`` tokens; return 0 if allowed, else the seconds until it would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        cost = min(n, self.capacity)  # a request larger than a burst waits for a full bucket
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, source: EventSource, events: int, now: float) -> None:
        rate = source.rate_limit_per_second
        if rate is None:
            return
        bucket = self._buckets.get(source.id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[source.id] = TokenBucket(
                rate, max(rate, 1.0), max(rate, 1.0), now
            )
        wait = bucket.take(events, now)
        if wait > 0:
            raise RateLimited(
                f"source {source.id!r} is limited to {rate:g} events/s; retry in {wait:.1f}s",
                retry_after=max(1, math.ceil(wait)),
            )
