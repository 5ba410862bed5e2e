"""The small languages inside rules: field paths, templates, secret references, dates and
RE2 patterns. Each ``parse_*`` raises ValueError with a message naming the problem and
what is valid."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import re2
from pydantic import (
    AfterValidator,
    JsonValue,
)

__all__ = [
    "MAX_MATCH_INPUT",
    "MAX_PATTERN_LENGTH",
    "PATH_ROOTS",
    "FieldPath",
    "JsonScalar",
    "JsonTemplate",
    "Placeholder",
    "TemplatePart",
    "TemplateStr",
    "compile_pattern",
    "parse_date_text",
    "parse_path",
    "parse_template",
    "secret_names",
]

PATH_ROOTS = ("event", "profile", "session")
MAX_PATH_LENGTH = 256
MAX_PATH_DEPTH = 16
MAX_TEMPLATE_LENGTH = 10_000
MAX_PLACEHOLDERS = 50
MAX_PATTERN_LENGTH = 200
MAX_MATCH_INPUT = 10_000  # longer strings never match (keeps a match well under a millisecond)
MAX_JSON_DEPTH = 32
MAX_RELATIVE_AMOUNT = 100_000

JsonScalar = str | int | float | bool | None


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_of(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


# -- field paths ----------------------------------------------------------------------------

_SEGMENT = re.compile(r"^[^.\s{}|]+$")


@functools.lru_cache(maxsize=4096)
def _parse_path_text(text: str) -> tuple[str, ...]:
    if not text or len(text) > MAX_PATH_LENGTH:
        raise ValueError(
            f"field path {_show(text)} must be 1-{MAX_PATH_LENGTH} characters, "
            "like 'event.properties.total'"
        )
    parts = tuple(text.split("."))
    if parts[0] not in PATH_ROOTS:
        raise ValueError(
            f"field path {_show(text)} must start with one of {_one_of(PATH_ROOTS)} "
            "(like 'event.properties.total')"
        )
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError(f"field path {_show(text)} is deeper than {MAX_PATH_DEPTH} segments")
    if not all(_SEGMENT.match(p) for p in parts):
        raise ValueError(
            f"field path {_show(text)} has an empty or invalid segment (segments are "
            "separated by '.' and contain no spaces, '{', '}' or '|')"
        )
    return parts


def parse_path(text: object) -> tuple[str, ...]:
    """``"event.properties.total"`` -> ``("event", "properties", "total")``; ValueError
    naming the problem. List elements are addressed by index: ``event.properties.items.0``."""
    if not isinstance(text, str):
        raise ValueError(
            f"a field path is a string like 'event.properties.total', got {_show(text)}"
        )
    return _parse_path_text(text)


def _check_path(text: str) -> str:
    parse_path(text)
    return text


FieldPath = Annotated[str, AfterValidator(_check_path)]

# -- templates ------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_DEFAULT = re.compile(r"^\s*default\s*:(.*)$", re.DOTALL)
SECRET_REF = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]{0,63})\}")
SECRET_START = "${secret:"


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{{ path }}`` or ``{{ path | default: <JSON scalar> }}`` in a template."""

    path: tuple[str, ...]
    has_default: bool = False
    default: JsonScalar = None


TemplatePart = str | Placeholder


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Literal text and placeholders, in order; ValueError naming the problem."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise ValueError(f"a template is at most {MAX_TEMPLATE_LENGTH} characters")
    parts: list[TemplatePart] = []
    position = 0
    for found in _PLACEHOLDER.finditer(text):
        _add_literal(parts, text[position : found.start()])
        parts.append(_placeholder(found.group(1)))
        position = found.end()
    _add_literal(parts, text[position:])
    if sum(isinstance(p, Placeholder) for p in parts) > MAX_PLACEHOLDERS:
        raise ValueError(f"a template has at most {MAX_PLACEHOLDERS} placeholders")
    return tuple(parts)


def _add_literal(parts: list[TemplatePart], literal: str) -> None:
    if "{{" in literal:
        raise ValueError("template has an unclosed '{{' (write placeholders as {{ path }})")
    if literal:
        parts.append(literal)


def _placeholder(inner: str) -> Placeholder:
    path_text, bar, rest = inner.partition("|")
    try:
        path = parse_path(path_text.strip())
    except ValueError as exc:
        raise ValueError(f"in placeholder {{{{{inner}}}}}: {exc}") from None
    if not bar:
        return Placeholder(path)
    found = _DEFAULT.match(rest)
    ok, default = _json_scalar(found.group(1).strip()) if found else (False, None)
    if not ok:
        raise ValueError(
            f"in placeholder {{{{{inner}}}}}: after '|' only 'default: <JSON scalar>' is "
            'allowed, like {{ event.properties.plan | default: "free" }}'
        )
    return Placeholder(path, True, default)


def _json_scalar(text: str) -> tuple[bool, JsonScalar]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None
    if isinstance(value, str | int | float | bool) or value is None:
        return True, value
    return False, None


def secret_names(text: str) -> tuple[str, ...]:
    """Names of the ``${secret:NAME}`` references in a header value, in order."""
    return tuple(SECRET_REF.findall(text))


def _check_template(text: str) -> str:
    parse_template(text)
    if SECRET_START in text:
        raise ValueError(
            "secret references (${secret:NAME}) are allowed only in webhook header values"
        )
    return text


def _check_json_template(value: JsonValue) -> JsonValue:
    problem = _json_template_problem(value, "", 0)
    if problem:
        raise ValueError(problem)
    return value


def _json_template_problem(value: JsonValue, where: str, depth: int) -> str | None:
    if depth > MAX_JSON_DEPTH:
        return f"at '{where}': nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        try:
            _check_template(value)
        except ValueError as exc:
            return f"at '{where}': {exc}" if where else str(exc)
    if isinstance(value, float) and not math.isfinite(value):
        return f"at '{where}': {value} is not a finite number"
    items: list[tuple[str, JsonValue]] = []
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else k, v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for at, item in items:
        problem = _json_template_problem(item, at, depth + 1)
        if problem:
            return problem
    return None


TemplateStr = Annotated[str, AfterValidator(_check_template)]
JsonTemplate = Annotated[JsonValue, AfterValidator(_check_json_template)]

# -- dates and patterns ---------------------------------------------------------------------

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d{1,6})\s*([smhdw]))?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@functools.lru_cache(maxsize=1024)
def parse_date_text(text: str) -> datetime | timedelta:
    """An ISO-8601 date or datetime (naive means UTC) as an aware datetime, or a relative
    ``now``, ``now-30d``, ``now+2h`` (units s, m, h, d, w) as the offset from now."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        sign, amount, unit = relative.groups()
        if amount is None:
            return timedelta(0)
        if int(amount) > MAX_RELATIVE_AMOUNT:
            raise ValueError(f"relative date {text!r}: the amount is at most {MAX_RELATIVE_AMOUNT}")
        seconds = int(amount) * _UNIT_SECONDS[unit]
        return timedelta(seconds=-seconds if sign == "-" else seconds)
    try:
        if len(text) > 64:
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{_show(text)} is not a date: use ISO-8601 ('2026-01-31', "
            "'2026-01-31T12:00:00Z') or a relative 'now', 'now-30d', 'now+2h' "
            "(units s, m, h, d, w)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str, ignore_case: bool = False) -> Any:
    """The RE2 program for a ``match`` pattern; ValueError naming the problem."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"a pattern is at most {MAX_PATTERN_LENGTH} characters")
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    options.max_mem = 1 << 20
    try:
        return re2.compile(pattern, options)
    except UnicodeError:
        raise ValueError(f"pattern {_show(pattern)} is not valid text (a lone surrogate)") from None
    except re2.error as exc:
        first = exc.args[0] if exc.args else "invalid"
        reason = first.decode(errors="replace") if isinstance(first, bytes) else str(first)
        raise ValueError(
            f"pattern {_show(pattern)} is not a valid RE2 expression ({reason}); "
            "backreferences and lookaround are not supported"
        ) from None
