"""Retrying a retriable operation with capped exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from processors.errors import StageError

__all__ = ["backoff_delays", "retry_while_retriable"]

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delays(first: float = 0.1, cap: float = 10.0, rng: random.Random | None = None):  # type: ignore[no-untyped-def]
    """0.1, 0.2, 0.4, ... seconds up to ``cap``, each with up to 20% jitter; endless."""
    rng = rng or random.Random()
    delay = first
    while True:
        yield delay * (1 + rng.random() * 0.2)
        delay = min(cap, delay * 2)


async def retry_while_retriable(
    operation: Callable[[], Awaitable[T]], what: str, cap: float = 10.0
) -> T:
    """Run ``operation`` until it succeeds; retriable errors wait and retry, others raise."""
    delays = backoff_delays(cap=cap)
    attempt = 1
    while True:
        try:
            return await operation()
        except StageError as exc:
            if not exc.retriable:
                raise
            delay = next(delays)
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
            attempt += 1
