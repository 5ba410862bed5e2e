"""Wiring the identify stage: its configuration from settings, and one batch of raw events.

    events.raw ──> identify ──> events.identified (canonical profile id, session id set)
                      └──────> identity.claims (keyed by identifier)

State lives in PostgreSQL, read once per batch and written after the outputs are durable:

* which profile an id resolves to: ``profiles.merged_into``, written by the merge stage in
  the transaction that merges (so the identify stage sees a merge as soon as it commits,
  and a chain A -> B -> C resolves in one step: ``merged_into`` always names a root);
* per profile id as clients send it (the raw topic's key): the last session, when the
  profile was first seen, its user id and the identifiers it already claimed
  (``identify_state``).

Why not Faust tables or a compacted alias topic: one source of truth that every worker
reads, so a restarted worker, a second worker, or one that takes over a partition after a
rebalance continues from what was committed, with no changelog to recover. Under replay
the stage is deterministic given the state: a fresh database (or a fresh consumer group
reading from the beginning into a fresh database) decides the same sessions and claims;
replaying into the same database re-sends events the store already holds (idempotent by
event id) and claims the merge stage already applied (idempotent).

The state is written after the outputs are acknowledged by the broker and before the source
offsets are, so a crash in between replays the batch with the state it had.

Besides the claims of ``identify()``, a profile seen for the first time claims its own id (a
``profile_id`` identifier), so an ``alias`` naming it merges whether the merge stage sees
the alias before or after that profile's first event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import SecretStr, ValidationError

from processors.identity import (
    DEFAULT_BLOCKED_VALUES,
    Identification,
    IdentifyConfig,
    MergeConfig,
    TraitField,
    blocked_conflicts,
    identify,
)
from processors.identity_store import IdentityStore, KnownProfile
from processors.retry import retry_while_retriable
from processors.store_step import Message, failed_event
from schemas import FailedEvent, InvalidMessage, RawEvent, decode_raw_event, encode
from schemas.codec import describe_validation_error
from schemas.identity import PROFILE_ID, Identifier, IdentifyState, IdentityClaim, IdentityConflict
from trackflow.settings import Settings, SettingsError

__all__ = ["IdentifiedBatch", "IdentifyStep", "identify_batch", "identity_configs"]

STAGE = "identify"


def identity_configs(settings: Settings) -> tuple[IdentifyConfig, MergeConfig]:
    """The identify and merge configuration from ``TRACKFLOW_*`` settings."""
    blocked = DEFAULT_BLOCKED_VALUES | {
        v for v in settings.identity_blocked_values.split(",") if v.strip()
    }
    hashed = frozenset(t.strip() for t in settings.identity_hashed_types.split(",") if t.strip())
    salt = settings.hash_salt.get_secret_value()
    try:
        identify_config = IdentifyConfig(
            trait_fields=tuple(_trait_field(f) for f in settings.identity_trait_fields.split(",")),
            hashed_types=hashed,
            hash_salt=SecretStr(salt) if salt else None,
            default_country_code=settings.identity_default_country_code,
            blocked_values=blocked,
            session_timeout=timedelta(minutes=settings.session_timeout_minutes),
        )
        merge_config = MergeConfig(
            blocked_values=blocked,
            allow_user_id_conflict=settings.allow_user_id_conflict,
            max_profiles_per_merge=settings.max_profiles_per_merge,
        )
    except ValidationError as exc:
        raise SettingsError(
            "invalid identity settings (TRACKFLOW_IDENTITY_*, TRACKFLOW_HASH_SALT): "
            + describe_validation_error(exc)
        ) from None
    return identify_config, merge_config


def _trait_field(entry: str) -> TraitField:
    name, _, rest = entry.strip().partition(":")
    kind, _, kind_type = rest.partition(":")
    return TraitField.model_validate(
        {"name": name, "kind": kind or "text", "type": kind_type or None}
    )


@dataclass
class IdentifiedBatch:
    outputs: list[tuple[bytes, bytes]] = field(default_factory=list)  # events.identified
    claims: list[tuple[bytes, bytes]] = field(default_factory=list)  # identity.claims
    failures: list[FailedEvent] = field(default_factory=list)
    states: dict[str, IdentifyState] = field(default_factory=dict)
    conflicts: list[IdentityConflict] = field(default_factory=list)
    new_sessions: int = 0


def identify_batch(
    batch: Sequence[tuple[Message, RawEvent]],
    states: Mapping[str, IdentifyState],
    known: Mapping[str, KnownProfile],
    config: IdentifyConfig,
) -> IdentifiedBatch:
    """Identify each event in order, with the stored state and the canonical ids as read.
    Pure: the step reads and writes; this decides."""
    out = IdentifiedBatch(states=dict(states))
    for message, event in batch:
        if event.profile_less:  # no profile: nothing to identify, no state, no claims
            out.outputs.append((event.profile_id.encode(), encode(event)))
            continue
        try:
            state = _current_state(event, out.states.get(event.profile_id), known)
            result = identify(event, state, config)
        except Exception as exc:  # one bad message must not stop the partition
            reason = f"{type(exc).__name__}: {exc}"[:500]
            out.failures.append(failed_event(STAGE, message, reason, "stage_error", event.id))
            continue
        unstorable = _nul_field(result)
        if unstorable is not None:
            reason = f"{unstorable} contains a NUL character, which PostgreSQL cannot store"
            out.failures.append(failed_event(STAGE, message, reason, "unstorable", event.id))
            continue
        out.states[event.profile_id] = result.state
        out.outputs.append((result.event.profile_id.encode(), encode(result.event)))
        claims = _dated(result.claims, known.get(event.profile_id))
        if result.is_new_profile:
            claims = [*claims, _self_claim(result)]
        out.claims += [(c.key.encode(), c.model_dump_json().encode()) for c in claims]
        out.conflicts += blocked_conflicts(result)
        out.new_sessions += result.is_new_session
    return out


def _dated(
    claims: Sequence[IdentityClaim], profile: KnownProfile | None
) -> Sequence[IdentityClaim]:
    """Claims by a merged id name its canonical profile; give them when that was created,
    so the merge stage never has to guess it (a replay into another database included)."""
    if profile is None:
        return claims
    return [
        c
        if c.profile_created_at is not None or c.profile_id != profile.canonical_id
        else c.model_copy(update={"profile_created_at": profile.canonical_created_at})
        for c in claims
    ]


def _nul_field(result: Identification) -> str | None:
    event = result.event
    texts = {
        "profile_id": result.original_profile_id,
        "session_id": event.session_id or "",
        "user_id": result.state.user_id or "",
        **{f"identifier {c.identifier.type}": c.identifier.value for c in result.claims},
    }
    return next((name for name, text in texts.items() if "\x00" in text), None)


def _self_claim(result: Identification) -> IdentityClaim:
    """A profile seen for the first time holds its own id as a ``profile_id`` identifier,
    so an ``alias`` naming it merges whichever of the two claims the merge stage sees
    first: the alias before the profile's first event, or after. Its reason is ``alias``:
    a ``profile_id`` identifier only ever joins profiles through an alias."""
    event = result.event
    return IdentityClaim(
        identifier=Identifier(type=PROFILE_ID, value=result.original_profile_id),
        profile_id=event.profile_id,
        event_id=event.id,
        event_type=event.type,
        claimed_at=event.received_at,
        reason="alias",
        user_id=result.state.user_id,
        profile_created_at=result.state.created_at,
    )


def _current_state(
    event: RawEvent, state: IdentifyState | None, known: Mapping[str, KnownProfile]
) -> IdentifyState | None:
    profile = known.get(event.profile_id)
    if profile is None:
        return state
    if state is None:
        return IdentifyState(
            profile_id=profile.id, canonical_id=profile.canonical_id, created_at=profile.created_at
        )
    return state.model_copy(update={"canonical_id": profile.canonical_id})


class IdentifyStep:
    def __init__(self, store: IdentityStore, config: IdentifyConfig, retry_cap: float) -> None:
        self._store = store
        self._config = config
        self._retry_cap = retry_cap

    async def __call__(self, batch: Sequence[Message]) -> IdentifiedBatch:
        decoded: list[tuple[Message, RawEvent]] = []
        failures: list[FailedEvent] = []
        for message in batch:
            try:
                decoded.append((message, decode_raw_event(message.value)))
            except InvalidMessage as exc:
                failures.append(failed_event(STAGE, message, exc.reason, exc.code, None))
        ids = [event.profile_id for _, event in decoded if not event.profile_less]
        states, known = await retry_while_retriable(
            lambda: self._store.load_identify(ids), "load identify state", self._retry_cap
        )
        result = identify_batch(decoded, states, known, self._config)
        result.failures[:0] = failures
        result.states = {pid: s for pid, s in result.states.items() if pid in set(ids)}
        return result

    async def commit(self, result: IdentifiedBatch) -> list[IdentityConflict]:
        """Store the state once the outputs are durable; the conflicts recorded now."""
        if not result.states and not result.conflicts:
            return []
        return await retry_while_retriable(
            lambda: self._store.save_identify(result.states, result.conflicts),
            "save identify state",
            self._retry_cap,
        )
