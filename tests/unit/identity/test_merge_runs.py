"""The merge stage's runs of claims that can be recorded together (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.merge_stage import _independent_run
from processors.store_step import Message
from schemas.identity import PROFILE_ID, USER_ID, Identifier, IdentityClaim

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _claim(profile: str, kind: str, value: str, user_id: str | None = None):  # type: ignore[no-untyped-def]
    claim = IdentityClaim(
        identifier=Identifier(type=kind, value=value),
        profile_id=profile,
        event_id="e",
        event_type="identify",
        claimed_at=AT,
        user_id=user_id,
    )
    return Message("claims", 0, 0, b""), claim


def _lengths(claims):  # type: ignore[no-untyped-def]
    lengths, start = [], 0
    while start < len(claims):
        run = _independent_run(claims, start)
        lengths.append(len(run))
        start += len(run)
    return lengths


def test_a_run_ends_before_a_shared_identifier_or_profile() -> None:
    claims = [
        _claim("a", "email", "x@e"),
        _claim("b", "email", "y@e"),
        _claim("c", "email", "x@e"),  # x@e again
        _claim("d", PROFILE_ID, "d"),
        _claim("e", "phone", "1", user_id="u1"),
        _claim("f", USER_ID, "u1"),  # the user id e's claim records
        _claim("g", PROFILE_ID, "h"),
        _claim("h", "email", "z@e"),  # the profile g's claim names
        _claim("h", "phone", "2"),  # the same claiming profile
    ]
    assert _lengths(claims) == [2, 3, 2, 1, 1]


def test_independent_claims_form_one_run_up_to_its_limit() -> None:
    claims = [_claim(f"p{n}", "email", f"{n}@e") for n in range(1200)]
    assert _lengths(claims) == [500, 500, 200]
