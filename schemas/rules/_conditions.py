"""Conditions: a JSON-logic-style tree, parsed with every problem collected (never eval)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    JsonValue,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from schemas.rules._syntax import (
    JsonScalar,
    _one_of,
    _show,
    compile_pattern,
    parse_date_text,
    parse_path,
)

__all__ = [
    "COMPARE_OPS",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Compare",
    "CompareOp",
    "Condition",
    "ConditionNode",
    "Const",
    "Contains",
    "DateOf",
    "Exists",
    "In",
    "Matches",
    "Not",
    "Operand",
    "Var",
    "dump_condition",
    "parse_condition",
]

MAX_CONDITION_DEPTH = 16
MAX_CONDITION_NODES = 200
MAX_LIST_OPERAND = 1_000

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[CompareOp, ...] = ("==", "!=", "<", "<=", ">", ">=")
OPERATORS = (*COMPARE_OPS, "and", "or", "not", "exists", "in", "contains", "match")


@dataclass(frozen=True, slots=True)
class Var:
    """A field reference: ``{"var": "event.properties.total"}``."""

    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Const:
    """A JSON scalar or a tuple of scalars."""

    value: JsonScalar | tuple[JsonScalar, ...]


@dataclass(frozen=True, slots=True)
class DateOf:
    """``{"date": ...}``: compare as datetimes. ``text`` is ISO-8601 or relative."""

    value: Var | str


Operand = Var | Const | DateOf


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[ConditionNode, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[ConditionNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    condition: ConditionNode


@dataclass(frozen=True, slots=True)
class Exists:
    """The field is present and not null."""

    var: Var


@dataclass(frozen=True, slots=True)
class In:
    """``item`` is an element of the list ``collection``, or a substring of the string."""

    item: Operand
    collection: Operand


@dataclass(frozen=True, slots=True)
class Contains:
    """``collection`` (a list or string) contains ``item``: ``In`` the other way round."""

    collection: Operand
    item: Operand


@dataclass(frozen=True, slots=True)
class Matches:
    """``value`` is a string in which RE2 ``pattern`` finds a match (search semantics)."""

    value: Operand
    pattern: str
    ignore_case: bool = False


ConditionNode = Compare | AllOf | AnyOf | Not | Exists | In | Contains | Matches
_NODE_TYPES = (Compare, AllOf, AnyOf, Not, Exists, In, Contains, Matches)


class _ConditionParser:
    """JSON-logic -> tree, collecting every problem as (relative path, message)."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.nodes = 0
        self.too_big = False

    def fail(self, at: str, message: str) -> None:
        self.problems.append((at, message))

    def condition(self, raw: object, at: str, depth: int) -> ConditionNode | None:
        self.nodes += 1
        if depth > MAX_CONDITION_DEPTH or self.nodes > MAX_CONDITION_NODES:
            if not self.too_big:
                limit = f"{MAX_CONDITION_DEPTH} levels deep and {MAX_CONDITION_NODES} operators"
                self.fail(at, f"a condition is at most {limit}")
            self.too_big = True
            return None
        if not isinstance(raw, dict) or len(raw) != 1:
            self.fail(
                at,
                "a condition is an object with exactly one operator "
                f"({_one_of(OPERATORS)}), got {_show(raw)}",
            )
            return None
        [(op, args)] = raw.items()
        if op not in OPERATORS:
            self.fail(at, f"{_show(op)} is not one of {_one_of(OPERATORS)}")
            return None
        listed = isinstance(args, list)
        values: list[Any] = args if isinstance(args, list) else [args]
        here = f"{at}.{op}"
        paths = [f"{here}[{i}]" if listed else here for i in range(len(values))]
        return self._operator(op, values, here, paths, depth)

    def _operator(
        self, op: str, args: list[Any], here: str, at: list[str], depth: int
    ) -> ConditionNode | None:
        if op in ("and", "or"):
            if not args:
                self.fail(here, f"'{op}' needs a list of at least one condition")
                return None
            items = [self.condition(a, p, depth + 1) for a, p in zip(args, at, strict=True)]
            kept = tuple(i for i in items if i is not None)
            if len(kept) != len(items):
                return None
            return AllOf(kept) if op == "and" else AnyOf(kept)
        if op == "not":
            if not self._arity(op, args, here, 1, "one condition"):
                return None
            inner = self.condition(args[0], at[0], depth + 1)
            return Not(inner) if inner is not None else None
        if op == "exists":
            if not self._arity(op, args, here, 1, 'one field, {"var": "<path>"}'):
                return None
            var = self.operand(args[0], at[0])
            if var is not None and not isinstance(var, Var):
                self.fail(at[0], '\'exists\' takes a field, {"var": "<path>"}')
                return None
            return Exists(var) if isinstance(var, Var) else None
        if op == "match":
            return self._match(args, here, at)
        if not self._arity(op, args, here, 2, "two operands"):
            return None
        left, right = self.operand(args[0], at[0]), self.operand(args[1], at[1])
        if left is None or right is None:
            return None
        if op == "in":
            return In(left, right)
        if op == "contains":
            return Contains(left, right)
        return Compare(op, left, right)  # type: ignore[arg-type]

    def _arity(self, op: str, args: list[Any], here: str, n: int, what: str) -> bool:
        if len(args) != n:
            self.fail(here, f"'{op}' takes {what}, got {len(args)} arguments")
        return len(args) == n

    def _match(self, args: list[Any], here: str, at: list[str]) -> Matches | None:
        if len(args) not in (2, 3):
            self.fail(
                here,
                "'match' takes [value, pattern] or [value, pattern, \"i\"], "
                f"got {len(args)} arguments",
            )
            return None
        value = self.operand(args[0], at[0])
        pattern, flags = args[1], args[2] if len(args) == 3 else ""
        if flags not in ("", "i"):
            self.fail(at[2], f"match flags {_show(flags)} are not one of '' or 'i' (ignore case)")
            return None
        if not isinstance(pattern, str):
            self.fail(at[1], f"a match pattern is a literal string, got {_show(pattern)}")
            return None
        try:
            compile_pattern(pattern, flags == "i")
        except ValueError as exc:
            self.fail(at[1], str(exc))
            return None
        return Matches(value, pattern, flags == "i") if value is not None else None

    def operand(self, raw: object, at: str) -> Operand | None:
        if isinstance(raw, dict):
            return self._wrapped(raw, at)
        if isinstance(raw, list):
            if len(raw) > MAX_LIST_OPERAND or not all(_is_scalar(x) for x in raw):
                self.fail(at, f"a list operand holds at most {MAX_LIST_OPERAND} JSON scalars")
                return None
            return Const(tuple(raw))
        if isinstance(raw, date):
            return DateOf(raw.isoformat())
        if not _is_scalar(raw):
            self.fail(at, f"{_show(raw)} is not an operand (a JSON scalar, a list, var or date)")
            return None
        return Const(raw)  # type: ignore[arg-type]

    def _wrapped(self, raw: dict[Any, Any], at: str) -> Operand | None:
        if len(raw) == 1 and "var" in raw:
            try:
                return Var(parse_path(raw["var"]))
            except ValueError as exc:
                self.fail(f"{at}.var", str(exc))
                return None
        if len(raw) == 1 and "date" in raw:
            return self._date(raw["date"], f"{at}.date")
        self.fail(
            at,
            f'{_show(raw)} is not an operand: use {{"var": "<path>"}}, {{"date": "<ISO-8601 or '
            'now-30d>"}}, a JSON scalar or a list (a condition cannot be used as a value)',
        )
        return None

    def _date(self, inner: object, at: str) -> DateOf | None:
        if isinstance(inner, dict) and len(inner) == 1 and "var" in inner:
            var = self._wrapped(inner, at)
            return DateOf(var) if isinstance(var, Var) else None
        if isinstance(inner, date):
            inner = inner.isoformat()
        if not isinstance(inner, str):
            self.fail(
                at,
                'a date is a string ("2026-01-31", "now-30d") or {"var": ...}, '
                f"got {_show(inner)}",
            )
            return None
        try:
            parse_date_text(inner)
        except ValueError as exc:
            self.fail(at, str(exc))
            return None
        return DateOf(inner)


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def parse_condition(raw: object) -> tuple[ConditionNode | None, list[tuple[str, str]]]:
    """The tree and every problem as ``(path relative to the condition, message)``; the path
    reads like ``.and[1].>[0].var``. The tree is ``None`` whenever there is a problem."""
    parser = _ConditionParser()
    node = parser.condition(raw, "", 0)
    return (node if not parser.problems else None), parser.problems


def _validate_condition(raw: object) -> ConditionNode:
    if isinstance(raw, _NODE_TYPES):
        return raw
    node, problems = parse_condition(raw)
    if node is None:
        summary = "; ".join(f"{at.lstrip('.') or '(condition)'}: {msg}" for at, msg in problems)
        raise PydanticCustomError(
            "condition_invalid", "{summary}", {"summary": summary, "problems": tuple(problems)}
        )
    return node


def dump_condition(node: ConditionNode) -> dict[str, Any]:
    """The JSON-logic form that :func:`parse_condition` reads back to an equal tree."""
    match node:
        case Compare(op, left, right):
            return {op: [_dump_operand(left), _dump_operand(right)]}
        case AllOf(items) | AnyOf(items):
            return {"and" if isinstance(node, AllOf) else "or": [dump_condition(c) for c in items]}
        case Not(inner):
            return {"not": [dump_condition(inner)]}
        case Exists(var):
            return {"exists": [_dump_operand(var)]}
        case In(item, collection):
            return {"in": [_dump_operand(item), _dump_operand(collection)]}
        case Contains(collection, item):
            return {"contains": [_dump_operand(collection), _dump_operand(item)]}
        case Matches(value, pattern, ignore_case):
            return {"match": [_dump_operand(value), pattern, *(["i"] if ignore_case else [])]}
    raise TypeError(f"not a condition node: {node!r}")  # pragma: no cover


def _dump_operand(operand: Operand) -> JsonValue:
    if isinstance(operand, Var):
        return {"var": ".".join(operand.path)}
    if isinstance(operand, DateOf):
        inner = operand.value
        return {"date": _dump_operand(inner) if isinstance(inner, Var) else inner}
    return list(operand.value) if isinstance(operand.value, tuple) else operand.value


Condition = Annotated[
    ConditionNode,
    PlainValidator(_validate_condition),
    PlainSerializer(dump_condition, return_type=dict[str, Any]),
    WithJsonSchema(
        {
            "type": "object",
            "description": "A JSON-logic condition: one operator of "
            + ", ".join(OPERATORS)
            + ' over {"var": "event|profile|session.<path>"}, {"date": ...} and JSON values.',
            "minProperties": 1,
            "maxProperties": 1,
        }
    ),
]
