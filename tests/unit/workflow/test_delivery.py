"""The retry policy the webhook deliverer follows."""

from __future__ import annotations

import pytest

from processors.workflow import is_retriable_status, retry_delay


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (200, False),
        (204, False),
        (301, False),
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, False),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (599, True),
    ],
)
def test_which_answers_are_retried(status: int, retriable: bool) -> None:
    assert is_retriable_status(status) is retriable


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    top = [retry_delay(n, base_seconds=1, cap_seconds=60, rng=lambda: 1.0) for n in range(1, 9)]
    assert top == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(5, rng=lambda: 0.0) == 0.0
    assert retry_delay(5, base_seconds=1, rng=lambda: 0.5) == 8.0
    assert retry_delay(10_000, cap_seconds=600, rng=lambda: 1.0) == 600


def test_retry_after_is_respected_up_to_the_cap() -> None:
    assert retry_delay(1, retry_after=30, rng=lambda: 0.1) == 30
    assert retry_delay(1, retry_after=9999, cap_seconds=600, rng=lambda: 0.1) == 600
