"""What a deployment configures about identification and merging (frozen, validated once).

Where the identify stage reads identity from a ``RawEvent`` (dotted paths, defaults shown):

* the customer's user id (Segment ``userId``): ``context.user_id``;
* the previous id of an ``alias`` event (Segment ``previousId``): ``context.previous_id``;
* traits: the dicts at ``context.traits`` (Segment's own place for them; the Segment adapter
  also copies an ``identify`` call's top-level ``traits`` there). Add ``"properties"`` to
  ``trait_paths`` to read identifying traits from event properties too (Tracardi events).

Each configured trait field (default ``email`` and ``phone``) is normalised by its kind and
becomes an identifier of its ``type``; the types in ``hashed_types`` are stored as
``sha256(salt || value)`` in hex.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.identity import PROFILE_ID, USER_ID

__all__ = [
    "DEFAULT_BLOCKED_VALUES",
    "DEFAULT_SESSION_TIMEOUT",
    "IdentifierKind",
    "IdentifyConfig",
    "MergeConfig",
    "TraitField",
]

IdentifierKind = Literal["email", "phone", "text"]

DEFAULT_BLOCKED_VALUES: frozenset[str] = frozenset(
    {"", "null", "undefined", "none", "nil", "anonymous", "guest", "0", "-1"}
    | {"[object object]", "nan"}
)
DEFAULT_SESSION_TIMEOUT = timedelta(minutes=30)

_PATH = re.compile(r"^(properties|context|options)(\.[^.\s]+)*$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _blocked(values: frozenset[str]) -> frozenset[str]:
    return frozenset(value.strip().casefold() for value in values)


def _check_path(path: str, what: str) -> str:
    if not _PATH.match(path):
        raise ValueError(
            f"{what} {path!r} is not a dotted path under properties, context or options "
            "(e.g. 'context.user_id', 'context.traits')"
        )
    return path


class TraitField(_Frozen):
    """A trait that identifies a person: the key under the trait dicts, how to normalise it,
    and the identifier type it becomes (default: the key)."""

    name: str = Field(min_length=1, max_length=128)
    kind: IdentifierKind = "text"
    type: str | None = None

    @model_validator(mode="after")
    def _type(self) -> TraitField:
        identifier_type = self.identifier_type
        if not _TYPE.match(identifier_type) or identifier_type in (USER_ID, PROFILE_ID):
            raise ValueError(
                f"trait field {self.name!r}: identifier type {identifier_type!r} must be 1-64 "
                f"lower-case letters, digits or '_' (starting with a letter) and not "
                f"{USER_ID!r} or {PROFILE_ID!r}"
            )
        return self

    @property
    def identifier_type(self) -> str:
        return self.type or self.name


class IdentifyConfig(_Frozen):
    """How the identify stage finds identifiers and sessions."""

    user_id_path: str = "context.user_id"
    previous_id_path: str = "context.previous_id"
    trait_paths: tuple[str, ...] = ("context.traits",)
    trait_fields: tuple[TraitField, ...] = (
        TraitField(name="email", kind="email"),
        TraitField(name="phone", kind="phone"),
    )
    alias_event_types: frozenset[str] = frozenset({"alias"})
    identify_event_types: frozenset[str] = frozenset({"identify"})
    hashed_types: frozenset[str] = frozenset()
    hash_salt: SecretStr | None = None
    default_country_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}$")
    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    session_timeout: timedelta = DEFAULT_SESSION_TIMEOUT

    @field_validator("user_id_path", "previous_id_path")
    @classmethod
    def _id_path(cls, value: str) -> str:
        return _check_path(value, "path")

    @field_validator("trait_paths")
    @classmethod
    def _trait_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_path(path, "trait path") for path in value)

    @field_validator("blocked_values")
    @classmethod
    def _blocked_values(cls, value: frozenset[str]) -> frozenset[str]:
        return _blocked(value)

    @field_validator("session_timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"session_timeout must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _hashing(self) -> IdentifyConfig:
        if PROFILE_ID in self.hashed_types:
            raise ValueError(f"{PROFILE_ID!r} cannot be hashed: its value names a profile")
        if self.hashed_types and not (self.hash_salt and self.hash_salt.get_secret_value()):
            raise ValueError(
                f"hashed_types {sorted(self.hashed_types)} need a hash_salt "
                "(TRACKFLOW_HASH_SALT): unsalted digests of emails or phones are reversible"
            )
        names = [field.name for field in self.trait_fields]
        if len(set(names)) != len(names):
            raise ValueError(f"trait_fields name a field twice: {names}")
        return self

    @property
    def salt(self) -> bytes:
        return self.hash_salt.get_secret_value().encode() if self.hash_salt else b""


class MergeConfig(_Frozen):
    """Guardrails of the merge stage.

    * ``blocked_values``: identifier values that never merge anything (compared trimmed and
      case-folded; hashed values cannot be checked here, the identify stage drops them).
    * ``allow_user_id_conflict``: merge profiles with different user ids through a shared
      email/phone anyway (default: record an identity conflict instead).
    * ``max_profiles_per_merge``: the most profiles one identifier may pull into one merge.
    * ``trusted_types``: identifier types exempt from the user-id guardrail (a shared user id
      is the same user; a ``profile_id`` claim only comes from an explicit ``alias``).
    """

    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    allow_user_id_conflict: bool = False
    max_profiles_per_merge: int = Field(default=10, ge=2)
    trusted_types: frozenset[str] = frozenset({USER_ID, PROFILE_ID})

    @field_validator("blocked_values")
    @classmethod
    def _blocked_values(cls, value: frozenset[str]) -> frozenset[str]:
        return _blocked(value)
