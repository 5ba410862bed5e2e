"""The identify stage: who an event belongs to, in which session, and what it claims.

The agent keeps one ``IdentifyState`` per profile id as clients send it (a table keyed like
``events.raw``, so it is local to the partition), and feeds it the alias records of
``profiles.aliases`` (keyed by alias id, the same key) through ``apply_alias``:

    state = table.get(event.profile_id)
    result = identify(event, state, config)
    table[event.profile_id] = result.state
    send(events.identified, key=result.event.profile_id, value=result.event)
    for claim in result.claims:
        send(identity.claims, key=claim.key, value=claim)

``result.event`` carries the canonical profile id and the session id decided here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from processors.identity.config import IdentifyConfig
from processors.identity.errors import MergeCycleError
from processors.identity.extract import Rejection, build_claims, extract_identity
from processors.identity.sessions import SessionChange, decide_session
from schemas.envelope import RawEvent
from schemas.identity import IdentifyState, IdentityClaim, ProfileAlias, SessionState

__all__ = ["MAX_CLAIMED", "Identification", "apply_alias", "identify"]

MAX_CLAIMED = 256
"""Claimed-identifier digests kept per profile id (the oldest are forgotten)."""


@dataclass(frozen=True)
class Identification:
    event: RawEvent
    original_profile_id: str
    is_new_profile: bool
    session: SessionState
    session_change: SessionChange
    claims: tuple[IdentityClaim, ...]
    rejected: tuple[Rejection, ...]
    state: IdentifyState

    @property
    def is_new_session(self) -> bool:
        return self.session_change != "continued"


def identify(
    event: RawEvent, state: IdentifyState | None, config: IdentifyConfig
) -> Identification:
    is_new = state is None
    if state is None:
        state = IdentifyState(
            profile_id=event.profile_id,
            canonical_id=event.profile_id,
            created_at=event.received_at,
        )
    decision = decide_session(
        state.session,
        profile_id=state.profile_id,
        event_id=event.id,
        client_session_id=event.session_id,
        at=event.received_at,
        timeout=config.session_timeout,
    )
    extracted = extract_identity(event, config)
    user_id = extracted.user_id.value if extracted.user_id else state.user_id
    unmerged = state.canonical_id == state.profile_id
    claims = build_claims(
        event,
        extracted,
        profile_id=state.canonical_id,
        profile_created_at=state.created_at if unmerged else None,
        user_id=user_id,
    )
    fresh = [claim for claim in claims if _digest(claim.key) not in state.claimed]
    claimed = (*state.claimed, *(_digest(claim.key) for claim in fresh))[-MAX_CLAIMED:]
    return Identification(
        event=event.model_copy(
            update={"profile_id": state.canonical_id, "session_id": decision.session.id}
        ),
        original_profile_id=event.profile_id,
        is_new_profile=is_new,
        session=decision.session,
        session_change=decision.change,
        claims=tuple(fresh),
        rejected=extracted.rejected,
        state=state.model_copy(
            update={"user_id": user_id, "session": decision.session, "claimed": claimed}
        ),
    )


def apply_alias(state: IdentifyState | None, alias: ProfileAlias) -> IdentifyState:
    """The state of ``alias.alias_id`` once it resolves to ``alias.canonical_id``."""
    if alias.canonical_id == alias.alias_id:
        raise MergeCycleError((alias.alias_id, alias.canonical_id))
    if state is None:
        return IdentifyState(profile_id=alias.alias_id, canonical_id=alias.canonical_id)
    return state.model_copy(update={"canonical_id": alias.canonical_id})


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]
