"""Evaluating a condition tree against a :class:`Scope`. Total: never raises, whatever the
event holds; a comparison that makes no sense (a missing field, a string against a number)
is false.

- ``==`` compares JSON values exactly (``1 == 1.0``, but ``"1" != 1`` and ``true != 1``); a
  missing field is ``null``. ``!=`` is ``not ==``.
- ``<  <=  >  >=`` compare numbers (numeric strings count as numbers) or, when either side
  is ``{"date": ...}``, datetimes (ISO-8601 strings; naive means UTC).
- ``in`` / ``contains``: list membership (by ``==``) or substring.
- ``exists``: the field is present and not null.
- ``match``: RE2 search in a string of at most ``MAX_MATCH_INPUT`` characters.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

from processors.workflow.scope import MISSING, Scope
from schemas.rules import (
    MAX_MATCH_INPUT,
    AllOf,
    AnyOf,
    Compare,
    ConditionNode,
    Contains,
    DateOf,
    Exists,
    In,
    Matches,
    Not,
    Operand,
    Var,
    compile_pattern,
    parse_date_text,
)

__all__ = ["as_datetime", "as_number", "json_equal", "matches"]

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def matches(condition: ConditionNode | None, scope: Scope) -> bool:
    """Whether the condition holds; no condition always holds."""
    match condition:
        case None:
            return True
        case AllOf(items):
            return all(matches(c, scope) for c in items)
        case AnyOf(items):
            return any(matches(c, scope) for c in items)
        case Not(inner):
            return not matches(inner, scope)
        case Exists(var):
            return scope.resolve(var.path) not in (MISSING, None)
        case Compare(op, left, right):
            return _compare(op, left, right, scope)
        case In(item, collection) | Contains(collection, item):
            return _member(_value(item, scope), _value(collection, scope))
        case Matches(value, pattern, ignore_case):
            return _search(_value(value, scope), pattern, ignore_case)
    return False  # pragma: no cover - every node type is matched above


def _value(operand: Operand, scope: Scope) -> object:
    if isinstance(operand, Var):
        value = scope.resolve(operand.path)
        return None if value is MISSING else value
    if isinstance(operand, DateOf):
        inner = operand.value
        if isinstance(inner, Var):
            return as_datetime(_value(inner, scope))
        return _date_text(inner, scope.now)
    return operand.value if not isinstance(operand.value, tuple) else list(operand.value)


def _compare(op: str, left: Operand, right: Operand, scope: Scope) -> bool:
    a, b = _value(left, scope), _value(right, scope)
    if isinstance(left, DateOf) or isinstance(right, DateOf):
        a, b = as_datetime(a), as_datetime(b)
        if a is None or b is None:
            return op == "!="
    if op in ("==", "!="):
        return json_equal(a, b) == (op == "==")
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _ordered(op, (a > b) - (a < b))
    x, y = as_number(a), as_number(b)
    return x is not None and y is not None and _ordered(op, (x > y) - (x < y))


def _ordered(op: str, sign: int) -> bool:
    """Whether ``sign`` (-1, 0, 1: left below, equal to, above right) satisfies ``op``."""
    return {"<": sign < 0, "<=": sign <= 0, ">": sign > 0, ">=": sign >= 0}.get(op, False)


def json_equal(a: object, b: object) -> bool:
    """Equality of JSON values where booleans are not numbers and 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, str | datetime) or a is None:
        return type(a) is type(b) and a == b
    return False


def as_number(value: object) -> int | float | None:
    """A finite number, from a number or a numeric string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMBER.match(value.strip()):
        text = value.strip()
        number = float(text) if any(c in text for c in ".eE") else int(text)
        return number if isinstance(number, int) or math.isfinite(number) else None
    return None


def as_datetime(value: object) -> datetime | None:
    """An aware datetime from a datetime, a date or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _date_text(text: str, now: datetime) -> datetime | None:
    try:
        moment = parse_date_text(text)
        return as_datetime(now + moment if isinstance(moment, timedelta) else moment)
    except (ValueError, OverflowError):
        return None


def _member(item: object, collection: object) -> bool:
    if isinstance(collection, list | tuple):
        return any(json_equal(item, element) for element in collection)
    if isinstance(collection, str) and isinstance(item, str):
        return item in collection
    return False


def _search(value: object, pattern: str, ignore_case: bool) -> bool:
    if not isinstance(value, str) or len(value) > MAX_MATCH_INPUT:
        return False
    try:
        return compile_pattern(pattern, ignore_case).search(value) is not None
    except (ValueError, UnicodeError):  # an unvalidated pattern; a lone surrogate
        return False
