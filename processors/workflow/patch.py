"""Applying a :class:`ProfilePatch` to a profile (a JSON mapping with ``tags`` and ``traits``).

Evaluation applies each rule's patch to its view of the profile, so later rules see earlier
rules' changes; an adapter can apply the same patch to the stored profile. Total: a trait that
has the wrong shape is replaced (see the ops' docstrings), never an error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from processors.workflow.conditions import as_number, json_equal
from schemas.rules import (
    AddTags,
    AppendTrait,
    IncrementTrait,
    PatchOp,
    ProfilePatch,
    RemoveTags,
    SetTrait,
    UnsetTrait,
)

__all__ = ["apply_patch"]


def apply_patch(profile: Mapping[str, Any], patch: ProfilePatch) -> dict[str, Any]:
    """A new profile mapping with the patch applied in order; ``profile`` is not changed."""
    result = dict(profile)
    tags = result.get("tags")
    traits = result.get("traits")
    result["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    result["traits"] = copy.deepcopy(traits) if isinstance(traits, dict) else {}
    for op in patch.ops:
        _apply(result, op)
    return result


def _apply(profile: dict[str, Any], op: PatchOp) -> None:
    tags: list[str] = profile["tags"]
    traits: dict[str, Any] = profile["traits"]
    match op:
        case AddTags(tags=added):
            tags.extend(t for t in dict.fromkeys(added) if t not in tags)
        case RemoveTags(tags=removed):
            tags[:] = [t for t in tags if t not in removed]
        case SetTrait(trait=path, value=value):
            _parent(traits, path)[_leaf(path)] = copy.deepcopy(value)
        case UnsetTrait(trait=path):
            parent = _existing_parent(traits, path)
            if parent is not None:
                parent.pop(_leaf(path), None)
        case IncrementTrait(trait=path, by=by):
            parent = _parent(traits, path)
            parent[_leaf(path)] = (as_number(parent.get(_leaf(path))) or 0) + by
        case AppendTrait(trait=path, value=value, unique=unique, max_items=limit):
            parent = _parent(traits, path)
            items = parent.get(_leaf(path))
            items = list(items) if isinstance(items, list) else []
            if not (unique and any(json_equal(value, i) for i in items)):
                items.append(copy.deepcopy(value))
            parent[_leaf(path)] = items[-limit:]


def _parent(traits: dict[str, Any], path: str) -> dict[str, Any]:
    node = traits
    for name in path.split(".")[:-1]:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        node = child
    return node


def _existing_parent(traits: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: object = traits
    for name in path.split(".")[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]
