"""Per-source token buckets, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest_gateway.errors import RateLimited
from ingest_gateway.ratelimit import RateLimiter, TokenBucket
from schemas import EventSource

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, capacity=10, tokens=10, updated=0.0)
    assert bucket.take(10, now=0.0) == 0
    assert bucket.take(1, now=0.0) == pytest.approx(0.1)
    assert bucket.take(5, now=0.5) == 0
    assert bucket.take(1, now=0.5) == pytest.approx(0.1)


def test_a_request_larger_than_a_burst_waits_for_a_full_bucket() -> None:
    bucket = TokenBucket(rate=2, capacity=2, tokens=0, updated=0.0)
    assert bucket.take(20, now=0.0) == pytest.approx(1.0)
    assert bucket.take(20, now=1.0) == 0


def test_limiter_raises_429_with_retry_after_per_source() -> None:
    limited = EventSource(id="busy", name="busy", rate_limit_per_second=2, updated_at=T0)
    free = EventSource(id="free", name="free", updated_at=T0)
    limiter = RateLimiter()
    limiter.check(limited, 2, now=0.0)
    with pytest.raises(RateLimited) as info:
        limiter.check(limited, 1, now=0.0)
    assert info.value.status == 429 and info.value.headers() == {"Retry-After": "1"}
    assert "limited to 2 events/s" in info.value.message
    for _ in range(1000):
        limiter.check(free, 20, now=0.0)
    limiter.check(limited, 1, now=0.6)
