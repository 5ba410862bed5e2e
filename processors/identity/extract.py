"""Identifiers in a ``RawEvent``, and the identity claims they become. Pure; no I/O.

The rule (paths are :class:`~processors.identity.config.IdentifyConfig` settings):

* user id: ``context.user_id`` (Segment ``userId``; string or integer) -> type ``user_id``;
* traits: each configured field (default ``email``, ``phone``) in each dict at
  ``trait_paths`` (default ``context.traits``); a list value gives one identifier per item;
* ``alias`` events: ``context.previous_id`` (Segment ``previousId``) gives a ``profile_id``
  identifier (the earlier profile, when previousId was a trackflow profile / anonymous id)
  and a ``user_id`` identifier (when it was an earlier user id). Both are claimed by the
  event's profile with reason ``alias``, so the merge stage joins them explicitly.

A value that is missing is skipped silently; one that is blocked or malformed is skipped
with a :class:`Rejection` (for metrics and logs), never claimed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processors.identity.config import IdentifierKind, IdentifyConfig
from processors.identity.errors import BlockedIdentifier, InvalidIdentifier
from processors.identity.normalise import identifier_text, normalise_identifier
from schemas.envelope import RawEvent
from schemas.identity import PROFILE_ID, USER_ID, ClaimReason, Identifier, IdentityClaim

__all__ = ["ExtractedIdentity", "Rejection", "build_claims", "extract_identity", "read_path"]

_MAX_VALUES_PER_FIELD = 16


@dataclass(frozen=True)
class Rejection:
    """An identifier value that was not claimed, and why."""

    identifier_type: str
    reason: str
    blocked: bool
    value: str | None = None  # the text sent, for blocked placeholders only


@dataclass(frozen=True)
class ExtractedIdentity:
    """What an event says about who sent it. ``identifiers`` has no duplicates."""

    user_id: Identifier | None
    identifiers: tuple[tuple[Identifier, ClaimReason], ...]
    rejected: tuple[Rejection, ...]


def read_path(event: RawEvent, path: str) -> Any:
    """The value at a dotted path under ``properties``, ``context`` or ``options``; ``None``
    when any step is missing or not an object."""
    root, *keys = path.split(".")
    current: Any = getattr(event, root)
    for key in keys:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def extract_identity(event: RawEvent, config: IdentifyConfig) -> ExtractedIdentity:
    found: dict[Identifier, ClaimReason] = {}
    rejected: list[Rejection] = []
    is_alias = event.type in config.alias_event_types
    reason: ClaimReason = (
        "alias"
        if is_alias
        else "identify"
        if event.type in config.identify_event_types
        else "observed"
    )

    def take(identifier_type: str, kind: IdentifierKind, raw: object, why: ClaimReason) -> None:
        try:
            identifier = _normalise(config, identifier_type, kind, raw)
        except InvalidIdentifier as exc:
            blocked = isinstance(exc, BlockedIdentifier)
            value = _placeholder_text(identifier_type, raw) if blocked else None
            rejected.append(Rejection(identifier_type, exc.reason, blocked, value))
            return
        found.setdefault(identifier, why)

    user_raw = read_path(event, config.user_id_path)
    if user_raw is not None:
        take(USER_ID, "text", user_raw, reason)
    user_id = next((i for i in found if i.type == USER_ID), None)
    for field in config.trait_fields:
        for raw in _trait_values(event, config, field.name):
            take(field.identifier_type, field.kind, raw, reason)
    previous = read_path(event, config.previous_id_path) if is_alias else None
    if previous is not None and previous != event.profile_id:
        take(PROFILE_ID, "text", previous, "alias")
        take(USER_ID, "text", previous, "alias")
    return ExtractedIdentity(user_id, tuple(found.items()), tuple(rejected))


def build_claims(
    event: RawEvent,
    extracted: ExtractedIdentity,
    *,
    profile_id: str,
    profile_created_at: datetime | None,
    user_id: str | None,
) -> tuple[IdentityClaim, ...]:
    """One claim per identifier, by ``profile_id`` (canonical). ``user_id`` is the profile's
    user id when the event carries none."""
    claimant_user_id = extracted.user_id.value if extracted.user_id else user_id
    return tuple(
        IdentityClaim(
            identifier=identifier,
            profile_id=profile_id,
            event_id=event.id,
            event_type=event.type,
            claimed_at=event.received_at,
            reason=reason,
            user_id=claimant_user_id,
            profile_created_at=profile_created_at,
        )
        for identifier, reason in extracted.identifiers
    )


def _trait_values(event: RawEvent, config: IdentifyConfig, name: str) -> Iterator[object]:
    for path in config.trait_paths:
        traits = read_path(event, path)
        if not isinstance(traits, dict) or traits.get(name) is None:
            continue
        value = traits[name]
        if isinstance(value, list):
            yield from (item for item in value[:_MAX_VALUES_PER_FIELD] if item is not None)
        else:
            yield value


def _placeholder_text(identifier_type: str, raw: object) -> str:
    text = identifier_text(identifier_type, raw)
    return text if text.strip() else repr(text)


def _normalise(
    config: IdentifyConfig, identifier_type: str, kind: IdentifierKind, raw: object
) -> Identifier:
    return normalise_identifier(
        identifier_type,
        kind,
        raw,
        blocked=config.blocked_values,
        default_country_code=config.default_country_code,
        salt=config.salt if identifier_type in config.hashed_types else None,
    )
