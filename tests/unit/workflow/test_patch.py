"""Applying profile patches: ordered, total, never changing the input."""

from __future__ import annotations

from typing import Any

from processors.workflow import apply_patch
from schemas.rules import (
    AddTags,
    AppendTrait,
    IncrementTrait,
    ProfilePatch,
    RemoveTags,
    SetTrait,
    UnsetTrait,
)


def patch(*ops: Any) -> ProfilePatch:
    return ProfilePatch(ops=ops)


def test_tags_are_added_once_and_removed() -> None:
    out = apply_patch(
        {"tags": ["a"]}, patch(AddTags(tags=("b", "a", "b")), RemoveTags(tags=("a",)))
    )
    assert out["tags"] == ["b"]


def test_traits_are_set_nested_unset_incremented_and_appended() -> None:
    start = {"id": "p", "traits": {"score": 1, "loyalty": "gold", "seen": ["x"]}}
    out = apply_patch(
        start,
        patch(
            SetTrait(trait="loyalty.points", value=10),
            IncrementTrait(trait="score", by=2.5),
            IncrementTrait(trait="fresh", by=1),
            AppendTrait(trait="seen", value="x", unique=True),
            AppendTrait(trait="seen", value="y"),
            UnsetTrait(trait="missing.deep"),
            UnsetTrait(trait="fresh"),
        ),
    )
    assert out["traits"] == {"score": 3.5, "loyalty": {"points": 10}, "seen": ["x", "y"]}
    assert out["id"] == "p"
    assert start["traits"] == {"score": 1, "loyalty": "gold", "seen": ["x"]}


def test_wrong_shapes_are_replaced_not_errors() -> None:
    out = apply_patch(
        {"tags": "oops", "traits": {"n": "many", "l": 5}},
        patch(
            IncrementTrait(trait="n", by=1), AppendTrait(trait="l", value=1), AddTags(tags=("t",))
        ),
    )
    assert out["traits"] == {"n": 1, "l": [1]}
    assert out["tags"] == ["t"]


def test_append_keeps_the_newest_items() -> None:
    ops = [AppendTrait(trait="l", value=i, max_items=3) for i in range(5)]
    assert apply_patch({}, patch(*ops))["traits"]["l"] == [2, 3, 4]
