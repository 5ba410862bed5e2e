"""Builders for the identity tests (plain functions, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.envelope import RawEvent
from schemas.identity import (
    Claimant,
    Identifier,
    IdentityClaim,
    MergePlan,
    MergeReason,
    ProfileState,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(minutes: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(event_id: str = "e1", **fields: Any) -> RawEvent:
    values: dict[str, Any] = {
        "id": event_id,
        "type": "page_view",
        "source_id": "web",
        "profile_id": "p1",
        "received_at": T0,
        **fields,
    }
    return RawEvent.model_validate(values)


def email(value: str = "ann@example.com") -> Identifier:
    return Identifier(type="email", value=value)


def claim(
    profile_id: str = "p1",
    identifier: Identifier | None = None,
    *,
    user_id: str | None = None,
    reason: str = "observed",
    created_at: datetime | None = T0,
) -> IdentityClaim:
    return IdentityClaim.model_validate(
        {
            "identifier": identifier or email(),
            "profile_id": profile_id,
            "event_id": f"ev-{profile_id}",
            "event_type": "page_view",
            "claimed_at": at(60),
            "reason": reason,
            "user_id": user_id,
            "profile_created_at": created_at,
        }
    )


def claimant(profile_id: str, minutes: float = 0, *user_ids: str) -> Claimant:
    return Claimant(profile_id=profile_id, created_at=at(minutes), user_ids=tuple(user_ids))


def profile(profile_id: str, minutes: float = 0, **fields: Any) -> ProfileState:
    return ProfileState.model_validate({"id": profile_id, "created_at": at(minutes), **fields})


def plan(
    winner: str,
    *losers: str,
    identifier: Identifier | None = None,
    reason: MergeReason = "shared_identifier",
) -> MergePlan:
    return MergePlan(
        identifier=identifier or email(),
        winner_id=winner,
        loser_ids=losers,
        claimants=tuple(claimant(p) for p in (winner, *losers)),
        reason=reason,
        event_id="ev-merge",
        decided_at=at(90),
    )
