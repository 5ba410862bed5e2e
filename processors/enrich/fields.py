"""Reading loosely-typed JSON (an event's ``context``) without trusting its shape."""

from __future__ import annotations

__all__ = ["MAX_TEXT", "dig", "scalar_text", "text"]

MAX_TEXT = 512
_NUMBERS = (int, float)


def dig(value: object, *keys: str) -> object:
    """``value[k1][k2]...`` through dicts only; ``None`` where a key or a dict is missing."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def text(value: object, limit: int = MAX_TEXT) -> str | None:
    """A non-empty, stripped string of at most ``limit`` characters (NULs removed), or None.

    NULs are removed because PostgreSQL cannot store them in jsonb.
    """
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    value = value.strip()
    return value[:limit] if value else None


def scalar_text(value: object, limit: int = MAX_TEXT) -> str | None:
    """Like :func:`text`, but numbers (not booleans) are accepted as their decimal text."""
    if isinstance(value, str):
        return text(value, limit)
    if isinstance(value, _NUMBERS) and not isinstance(value, bool):
        return text(str(value), limit)
    return None
