"""Canonical profile ids over an alias mapping (``alias id -> the profile it merged into``).

The mapping is a forest: following it from any id ends at a canonical profile (a root).
``resolve`` follows a chain of any length (``A -> B -> C`` gives ``C`` in one call) and
refuses a mapping that loops. ``compress`` rewrites every alias to point at its root, so each
later lookup is one step; ``add_alias`` adds an edge and keeps the mapping compressed,
refusing an edge that would close a loop. Mappings are never changed in place.
"""

from __future__ import annotations

from collections.abc import Mapping

from processors.identity.errors import MergeCycleError

__all__ = ["add_alias", "compress", "resolve"]


def resolve(profile_id: str, aliases: Mapping[str, str]) -> str:
    """The canonical id of ``profile_id`` (itself when it is not an alias)."""
    path = [profile_id]
    seen = {profile_id}
    current = profile_id
    while (target := aliases.get(current)) is not None:
        path.append(target)
        if target in seen:
            raise MergeCycleError(tuple(path))
        seen.add(target)
        current = target
    return current


def compress(aliases: Mapping[str, str]) -> dict[str, str]:
    """The same mapping with every alias pointing straight at its root."""
    return {alias: resolve(alias, aliases) for alias in aliases}


def add_alias(aliases: Mapping[str, str], alias_id: str, canonical_id: str) -> dict[str, str]:
    """``aliases`` with ``alias_id`` merged into ``canonical_id``'s root, compressed.

    An alias that already resolves elsewhere is re-pointed (the newer merge decided);
    an edge whose target resolves back to ``alias_id`` is refused.
    """
    root = resolve(canonical_id, aliases)
    if root == alias_id:
        path = (alias_id, canonical_id) if canonical_id == root else (alias_id, canonical_id, root)
        raise MergeCycleError(path)
    updated = {
        key: root if resolve(key, aliases) == alias_id else target
        for key, target in aliases.items()
    }
    updated[alias_id] = root
    return compress(updated)
