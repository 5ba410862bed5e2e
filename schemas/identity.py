"""Messages and state of identity resolution: claims, merge decisions, audits, conflicts,
profile and session state.

Topics:

* ``trackflow.identity.claims.v1`` (``schemas.topics.IDENTITY_CLAIMS``) —
  :class:`IdentityClaim`, keyed by ``Identifier.key`` (``"<type>:<value>"``), so one writer
  decides per identifier. The merge stage applies its decisions to PostgreSQL directly, and
  the identify stage reads canonical ids from there, so :class:`MergePlan`,
  :class:`IdentityConflict` and :class:`ProfileAlias` are not published on topics today;
  they are the records the merge stage writes (``merge_audit``, ``identity_conflicts``,
  ``profile_aliases``).

``ProfileState`` and ``SessionState`` are what the stages read and write (PostgreSQL rows,
Faust tables); everything is frozen and JSON-friendly (``model_dump(mode="json")``).

Identifier values are normalised (see ``processors.identity.normalise``) and, for the types a
deployment configures, replaced by ``sha256(salt || value)`` in hex (``hashed=True``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, computed_field

__all__ = [
    "IDENTITY_VERSION",
    "PROFILE_ID",
    "USER_ID",
    "ClaimReason",
    "Claimant",
    "ConflictReason",
    "DroppedTrait",
    "Identifier",
    "IdentifierType",
    "IdentifyState",
    "IdentityClaim",
    "IdentityConflict",
    "MergeAudit",
    "MergeDecision",
    "MergeHistoryEntry",
    "MergePlan",
    "MergeReason",
    "NoMerge",
    "ProfileAlias",
    "ProfileState",
    "SessionState",
]

IDENTITY_VERSION = 1

USER_ID: Final = "user_id"
"""The identifier type of a customer's own user id (Segment ``userId``)."""
PROFILE_ID: Final = "profile_id"
"""The identifier type whose value names a trackflow profile (Segment ``alias`` previousId)."""

IdentifierType = str
"""``user_id``, ``profile_id``, or a configured trait field (``email``, ``phone``, ...)."""

ClaimReason = Literal["observed", "identify", "alias"]
"""Why a profile claims an identifier: seen on an event, an ``identify`` call, an ``alias``."""
MergeReason = Literal["shared_identifier", "user_id", "alias"]
ConflictReason = Literal["blocked_identifier", "user_id_conflict", "cap_exceeded"]

_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_Id = Field(min_length=1, max_length=128)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Identifier(_Frozen):
    """A normalised identifier value of one type (a hex digest when ``hashed``)."""

    type: IdentifierType = Field(pattern=_TYPE_PATTERN)
    value: str = Field(min_length=1, max_length=512)
    hashed: bool = False

    @property
    def key(self) -> str:
        """The Kafka key of claims on this identifier: ``"<type>:<value>"``."""
        return f"{self.type}:{self.value}"


class IdentityClaim(_Frozen):
    """Profile ``profile_id`` carries ``identifier``, as seen on event ``event_id``.

    ``profile_id`` is the canonical id as the identify stage resolved it. ``user_id`` is the
    claiming profile's user id as known to the identify stage (normalised, hashed like user
    ids are), so the merge stage can apply the user-id guardrail before the profile's own
    ``user_id`` claim has been recorded. ``profile_created_at`` is set when the identify stage
    knows when the claiming profile was created (it first saw it); the merge stage uses it
    for profiles the database does not know yet.
    """

    v: Literal[1] = 1
    identifier: Identifier
    profile_id: str = _Id
    event_id: str = _Id
    event_type: str = Field(min_length=1, max_length=128)
    claimed_at: AwareDatetime
    reason: ClaimReason = "observed"
    user_id: str | None = None
    profile_created_at: AwareDatetime | None = None

    @property
    def key(self) -> str:
        return self.identifier.key


class Claimant(_Frozen):
    """A canonical profile holding an identifier, as the merge stage sees it."""

    profile_id: str = _Id
    created_at: AwareDatetime
    user_ids: tuple[str, ...] = ()


class MergePlan(_Frozen):
    """The profiles in ``profile_ids`` are one person; ``winner_id`` ranks first.

    The rank is (created_at, id): the earliest created profile wins, ties by id. Applying the
    plan re-resolves every id to its current canonical profile and unites them under the
    best-ranked one, so the planned winner is advisory and a stale plan is still correct.
    """

    v: Literal[1] = 1
    identifier: Identifier
    winner_id: str = _Id
    loser_ids: tuple[str, ...] = Field(min_length=1)
    claimants: tuple[Claimant, ...]
    reason: MergeReason
    event_id: str = _Id
    decided_at: AwareDatetime

    @property
    def profile_ids(self) -> tuple[str, ...]:
        return (self.winner_id, *self.loser_ids)


class IdentityConflict(_Frozen):
    """A merge that guardrails refused. ``id`` is derived from the facts (idempotent insert)."""

    v: Literal[1] = 1
    id: str = _Id
    identifier: Identifier
    profile_ids: tuple[str, ...]
    reason: ConflictReason
    detail: str
    event_id: str = _Id
    detected_at: AwareDatetime


class NoMerge(_Frozen):
    """Nothing to merge: every holder of the identifier is already one profile."""

    identifier: Identifier
    profile_id: str = _Id


MergeDecision = MergePlan | IdentityConflict | NoMerge


class MergeAudit(_Frozen):
    """One profile merged into another: who, into whom, through which identifier, and why."""

    v: Literal[1] = 1
    id: str = _Id
    winner_id: str = _Id
    loser_id: str = _Id
    identifier: Identifier
    reason: MergeReason
    event_id: str = _Id
    decided_at: AwareDatetime


class ProfileAlias(_Frozen):
    """``alias_id`` is merged: its events belong to ``canonical_id`` (always a root)."""

    v: Literal[1] = 1
    alias_id: str = _Id
    canonical_id: str = _Id
    merged_at: AwareDatetime


class DroppedTrait(_Frozen):
    """A trait value that lost a merge (latest-wins, or not a number under ``sum``)."""

    field: str
    value: JsonValue
    updated_at: AwareDatetime
    profile_id: str


class MergeHistoryEntry(_Frozen):
    """``loser_id`` was merged into ``winner_id``; ``dropped`` holds the values that lost."""

    loser_id: str
    winner_id: str
    identifier: Identifier
    reason: MergeReason
    event_id: str
    merged_at: AwareDatetime
    dropped: tuple[DroppedTrait, ...] = ()


class ProfileState(_Frozen):
    """A profile as the merge stage reads and writes it.

    ``trait_times`` holds when each trait was last set; a trait without one counts as set at
    ``created_at``. ``user_id`` is the most recently seen user id (``user_id_seen_at``); every
    user id the profile ever had is also in ``identifiers``. ``merged_into`` is ``None`` for a
    canonical profile and the winner's id for a merged one.
    """

    id: str = _Id
    created_at: AwareDatetime
    traits: dict[str, JsonValue] = Field(default_factory=dict)
    trait_times: dict[str, AwareDatetime] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()
    identifiers: tuple[Identifier, ...] = ()
    user_id: str | None = None
    user_id_seen_at: AwareDatetime | None = None
    merged_into: str | None = None
    merge_history: tuple[MergeHistoryEntry, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def user_ids(self) -> tuple[str, ...]:
        """Every user id of this profile (``user_id`` and ``user_id`` identifiers), sorted."""
        ids = {i.value for i in self.identifiers if i.type == USER_ID}
        if self.user_id is not None:
            ids.add(self.user_id)
        return tuple(sorted(ids))

    def trait_time(self, name: str) -> datetime:
        return self.trait_times.get(name, self.created_at)


class SessionState(_Frozen):
    """A profile's visit. ``client_session_id`` is the id the client sent (if any); ``id``
    differs from it when the client kept an id past the inactivity timeout."""

    id: str = _Id
    profile_id: str = _Id
    client_session_id: str | None = None
    started_at: AwareDatetime
    last_seen_at: AwareDatetime
    event_count: int = Field(ge=1)


class IdentifyState(_Frozen):
    """What the identify stage keeps per profile id as clients send it (a table keyed like
    the raw topic). ``canonical_id`` is the profile it resolves to (itself unless merged);
    ``created_at`` is ``None`` when only an alias record has been seen. ``claimed`` holds
    digests of the identifier keys already claimed, so each is claimed once."""

    profile_id: str = _Id
    canonical_id: str = _Id
    created_at: AwareDatetime | None = None
    user_id: str | None = None
    session: SessionState | None = None
    claimed: tuple[str, ...] = ()
