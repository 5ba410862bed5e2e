"""How two profiles' traits combine in a merge, field by field.

Policies (``TraitPolicy.fields`` names one per field; ``default`` covers the rest):

* ``latest``: the value set last wins (``trait_times``); equal times are broken by the
  value's JSON text, so the outcome never depends on which profile won. The other value is
  kept as a :class:`~schemas.identity.DroppedTrait` in the merge history.
* ``union``: lists joined without duplicates, in JSON-text order; a scalar counts as a
  one-item list and ``null`` as an empty one.
* ``sum``: counters added (numbers only, booleans are not numbers); when either side is not
  a number the field falls back to ``latest``.
* ``auto`` (the default): ``union`` when either value is a list, else ``latest``.

Each combination is commutative and associative for a field whose values keep one shape
(``latest`` and ``union`` are also idempotent), so merging a group of profiles gives the same
traits in every order. Mixed shapes under ``auto``/``sum`` and float sums (rounding) are the
exceptions: give such fields an explicit policy. ``sum`` is not idempotent; the merge
applies each loser exactly once (a merged profile is never merged again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from schemas.identity import DroppedTrait, ProfileState

__all__ = [
    "FieldPolicy",
    "MergedTraits",
    "TraitPolicy",
    "TraitValue",
    "json_text",
    "merge_trait",
    "merge_traits",
]

FieldPolicy = Literal["latest", "union", "sum", "auto"]


class TraitPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: FieldPolicy = "auto"
    fields: dict[str, FieldPolicy] = {}

    def for_field(self, name: str) -> FieldPolicy:
        return self.fields.get(name, self.default)


@dataclass(frozen=True)
class TraitValue:
    """One profile's value of a trait, when it was set, and whose it is."""

    value: JsonValue
    updated_at: datetime
    profile_id: str


@dataclass(frozen=True)
class MergedTraits:
    traits: dict[str, JsonValue]
    trait_times: dict[str, datetime]
    dropped: tuple[DroppedTrait, ...]


def json_text(value: JsonValue) -> str:
    """Canonical JSON text: sorted keys, no spaces (a total order over values)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def merge_trait(
    name: str, a: TraitValue, b: TraitValue, policy: FieldPolicy
) -> tuple[TraitValue, tuple[DroppedTrait, ...]]:
    """The combined value (``profile_id`` of the side it came from, or ``a``'s) and the
    value that lost, if any."""
    if policy == "auto":
        policy = "union" if isinstance(a.value, list) or isinstance(b.value, list) else "latest"
    latest_time = max(a.updated_at, b.updated_at)
    if policy == "union":
        return TraitValue(_union(a.value, b.value), latest_time, a.profile_id), ()
    if policy == "sum":
        x, y = _number(a.value), _number(b.value)
        if x is not None and y is not None:
            return TraitValue(x + y, latest_time, a.profile_id), ()
    return _latest(name, a, b)


def merge_traits(first: ProfileState, second: ProfileState, policy: TraitPolicy) -> MergedTraits:
    traits: dict[str, JsonValue] = {}
    times: dict[str, datetime] = {}
    dropped: list[DroppedTrait] = []
    for name in sorted(first.traits.keys() | second.traits.keys()):
        sides = [_side(profile, name) for profile in (first, second) if name in profile.traits]
        merged = sides[0]
        if len(sides) == 2:
            merged, lost = merge_trait(name, sides[0], sides[1], policy.for_field(name))
            dropped.extend(lost)
        traits[name] = merged.value
        times[name] = merged.updated_at
    return MergedTraits(traits, times, tuple(dropped))


def _side(profile: ProfileState, name: str) -> TraitValue:
    return TraitValue(profile.traits[name], profile.trait_time(name), profile.id)


def _latest(name: str, a: TraitValue, b: TraitValue) -> tuple[TraitValue, tuple[DroppedTrait, ...]]:
    a_key, b_key = (a.updated_at, json_text(a.value)), (b.updated_at, json_text(b.value))
    if a_key == b_key:
        return a, ()
    kept, lost = (a, b) if a_key > b_key else (b, a)
    return kept, (
        DroppedTrait(
            field=name, value=lost.value, updated_at=lost.updated_at, profile_id=lost.profile_id
        ),
    )


def _union(a: JsonValue, b: JsonValue) -> list[JsonValue]:
    items = {json_text(item): item for item in (*_as_list(a), *_as_list(b))}
    return [items[text] for text in sorted(items)]


def _as_list(value: JsonValue) -> list[JsonValue]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _number(value: JsonValue) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
