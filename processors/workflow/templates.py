"""Rendering templates (``{{ event.properties.total }}``) against a :class:`Scope`.

No expressions, no attribute access, no eval: a placeholder is a field path and an optional
``default``. A template that is one placeholder alone keeps the value's JSON type; anywhere
else a value is written as text (strings as they are, ``null`` as nothing, anything else as
compact JSON). A missing field without a default raises :class:`RenderError` naming it.
"""

from __future__ import annotations

import json
from typing import cast
from urllib.parse import quote

import orjson
from pydantic import JsonValue

from processors.workflow.errors import RenderError
from processors.workflow.scope import MISSING, Scope
from schemas.rules import Placeholder, parse_template

__all__ = ["render_json", "render_text", "render_url", "render_value", "stringify"]


def render_value(template: str, scope: Scope) -> JsonValue:
    """The value of a lone placeholder, or the text of a mixed template."""
    parts = _parts(template)
    if len(parts) == 1 and isinstance(parts[0], Placeholder):
        return _lookup(parts[0], scope)
    return "".join(p if isinstance(p, str) else stringify(_lookup(p, scope)) for p in parts)


def render_text(template: str, scope: Scope) -> str:
    return stringify(render_value(template, scope))


def render_url(template: str, scope: Scope) -> str:
    """Like :func:`render_text`, with every substituted value percent-encoded, so a value can
    never change the URL's host, path structure or query."""
    parts = _parts(template)
    return "".join(
        p if isinstance(p, str) else quote(stringify(_lookup(p, scope)), safe="", errors="replace")
        for p in parts
    )


def render_json(value: JsonValue, scope: Scope) -> JsonValue:
    """A JSON value with every string rendered as a template; keys are left as they are."""
    if isinstance(value, str):
        return render_value(value, scope)
    if isinstance(value, dict):
        return {k: render_json(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, scope) for v in value]
    return value


def stringify(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):  # ints over 64 bits, lone surrogates
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _parts(template: str) -> tuple[str | Placeholder, ...]:
    try:
        return parse_template(template)
    except ValueError as exc:  # only for templates that bypassed rule validation
        raise RenderError(f"invalid template: {exc}") from None


def _lookup(placeholder: Placeholder, scope: Scope) -> JsonValue:
    value = scope.resolve(placeholder.path)
    if value is MISSING or value is None:
        if placeholder.has_default:
            return placeholder.default
        if value is MISSING:
            path = ".".join(placeholder.path)
            raise RenderError(f"{path} is missing (add '| default: <value>' to allow that)", path)
    return cast(JsonValue, value)  # the scope holds JSON only
