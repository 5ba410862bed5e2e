"""Blocked identifier values as identity conflicts. Pure; no I/O.

The identify stage never claims a placeholder value ("null", "guest", "", ...): each one
becomes an :class:`~schemas.identity.IdentityConflict` with reason ``blocked_identifier``
instead, so an operator sees which profiles send them. The conflict id is derived from the
facts (reason, identifier, profile), so a profile that sends the same placeholder again, or
a replay, records nothing new.
"""

from __future__ import annotations

from processors.identity.identify import Identification
from processors.identity.merge import identity_conflict
from schemas.identity import Identifier, IdentityClaim, IdentityConflict

__all__ = ["blocked_conflicts"]


def blocked_conflicts(result: Identification) -> tuple[IdentityConflict, ...]:
    """One conflict per blocked value the event sent, on its canonical profile."""
    event = result.event
    found: dict[str, IdentityConflict] = {}
    for rejection in result.rejected:
        if not rejection.blocked or rejection.value is None:
            continue
        identifier = Identifier(type=rejection.identifier_type, value=rejection.value[:512])
        claim = IdentityClaim(
            identifier=identifier,
            profile_id=event.profile_id,
            event_id=event.id,
            event_type=event.type,
            claimed_at=event.received_at,
        )
        detail = f"{rejection.reason}; sent by profile {event.profile_id!r}, never merged"
        conflict = identity_conflict(claim, [event.profile_id], "blocked_identifier", detail)
        found.setdefault(conflict.id, conflict)
    return tuple(found.values())
