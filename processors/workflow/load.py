"""Reading a rule file (YAML or JSON) into validated rules, all or nothing.

``load_rules`` returns every rule, or raises :class:`RuleFileError` listing every problem it
found, each with the rule (id, or index when there is no id), the field path and what is
valid. A file is a list of rules, a mapping with a ``rules`` list, or a single rule.
YAML is read with the safe loader; anchors and aliases are refused (they can expand a
small file into a huge one).
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal, Union, get_args, get_origin

import orjson
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from processors.workflow.errors import RuleFileError, RuleProblem
from schemas.rules import ACTION_KINDS, Rule

__all__ = ["MAX_FILE_BYTES", "RuleFormat", "load_rules"]

RuleFormat = Literal["yaml", "json"]
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64


def load_rules(text: str | bytes, format: RuleFormat = "yaml") -> list[Rule]:
    """Every rule in the file, in file order, or RuleFileError with every problem."""
    document = _parse(text, format)
    problems: list[RuleProblem] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(_rule_list(document)):
        label = _label(raw, index)
        rule = _validate(raw, label, problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(RuleProblem(label, "id", f"duplicate id (also {seen[rule.id]})"))
        seen.setdefault(rule.id, f"rule #{index}")
        rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    return rules


def _fail(message: str, path: str = "") -> RuleFileError:
    return RuleFileError([RuleProblem(None, path, message)])


def _parse(text: str | bytes, format: str) -> object:
    if format not in ("yaml", "json"):
        raise _fail(f"{format!r} is not a rule file format (yaml, json)")
    if len(text) > MAX_FILE_BYTES:
        raise _fail(f"the file is larger than {MAX_FILE_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"the file is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return _parse_json(text) if format == "json" else _parse_yaml(text)


def _parse_json(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"invalid JSON: {exc}") from None


def _parse_yaml(text: str) -> object:
    try:
        alias = next(
            (e for e in yaml.parse(text, Loader=yaml.SafeLoader) if isinstance(e, yaml.AliasEvent)),
            None,
        )
        document = None if alias else yaml.load(text, Loader=yaml.SafeLoader)  # the safe loader
    except yaml.YAMLError as exc:
        raise _fail(f"invalid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:
        raise _fail("the file nests too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp like 2026-02-30
        raise _fail(f"invalid YAML value: {exc}") from None
    if alias:
        line = alias.start_mark.line + 1
        raise _fail(f"YAML aliases (*{alias.anchor}) are not allowed (line {line})")
    return document


def _yaml_reason(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _rule_list(document: object) -> list[object]:
    if document is None:
        raise _fail("the file is empty; write rules as a list, or under a 'rules' key")
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and "rules" in document:
        extra = sorted(str(k) for k in document if k != "rules")
        if extra:
            raise _fail(f"unknown top-level keys {', '.join(extra)} (valid: rules)")
        rules = document["rules"]
        if not isinstance(rules, list):
            raise _fail(f"'rules' is a list of rules, got {type(rules).__name__}", "rules")
        return rules
    if isinstance(document, dict):
        return [document]
    raise _fail(
        f"the file holds a {type(document).__name__}; write rules as a list, "
        "under a 'rules' key, or one rule as a mapping"
    )


def _label(raw: object, index: int) -> str:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(rule_id, str) and rule_id and len(rule_id) <= 128:
        return f'rule "{rule_id}"'
    return f"rule #{index}"


def _validate(raw: object, label: str, problems: list[RuleProblem]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(RuleProblem(label, "", "a rule is a mapping with id, name, when, then"))
        return None
    plain_problems: list[RuleProblem] = []
    plain = _plain(raw, label, "", 0, plain_problems)
    if plain_problems:
        problems.extend(plain_problems)
        return None
    try:
        return Rule.model_validate(plain)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems.extend(p for err in _root_causes(errors) for p in _describe(err, label))
        return None


def _root_causes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Leave out "too short" for a list whose items failed (they were dropped, not absent)."""
    return [
        err
        for err in errors
        if err["type"] != "too_short"
        or not any(
            len(o["loc"]) > len(err["loc"]) and o["loc"][: len(err["loc"])] == err["loc"]
            for o in errors
        )
    ]


def _plain(value: object, label: str, path: str, depth: int, out: list[RuleProblem]) -> object:
    """The value as plain JSON (YAML dates become ISO strings); problems for the rest."""
    if depth > MAX_DEPTH:
        out.append(RuleProblem(label, path, f"nested deeper than {MAX_DEPTH} levels"))
        return None
    if isinstance(value, dict):
        result: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                out.append(RuleProblem(label, path, f"key {key!r} is not a string; quote it"))
                continue
            result[key] = _plain(item, label, f"{path}.{key}" if path else key, depth + 1, out)
        return result
    if isinstance(value, list):
        return [_plain(v, label, f"{path}[{i}]", depth + 1, out) for i, v in enumerate(value)]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        out.append(RuleProblem(label, path, f"{value} is not a finite number"))
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    out.append(RuleProblem(label, path, f"a {type(value).__name__} is not a JSON value"))
    return None


# -- pydantic errors -> problems ---------------------------------------------------------------


def _describe(err: ErrorDetails, label: str) -> list[RuleProblem]:
    path, owner = _locate(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "condition_invalid":
        return [RuleProblem(label, path + at, msg) for at, msg in ctx.get("problems", ())]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("tag")
        valid = ", ".join(ACTION_KINDS)
        found = f"{tag!r} is not one of {valid}" if tag is not None else f"missing; one of {valid}"
        return [RuleProblem(label, f"{path}.action", found)]
    if kind == "extra_forbidden":
        valid = ", ".join(owner.model_fields) if owner else "see the rule reference"
        return [RuleProblem(label, path, f"unknown field (valid here: {valid})")]
    if kind == "too_short":
        need, got = ctx.get("min_length"), ctx.get("actual_length")
        return [RuleProblem(label, path, f"needs at least {need} item(s), got {got}")]
    if kind == "missing":
        return [RuleProblem(label, path, "required field is missing")]
    if kind == "value_error":
        return [RuleProblem(label, path, str(ctx.get("error", err["msg"])))]
    if kind == "literal_error":
        return [
            RuleProblem(label, path, f"{_short(err['input'])} is not one of {ctx.get('expected')}")
        ]
    return [RuleProblem(label, path, f"{err['msg']} (got {_short(err['input'])})")]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _locate(loc: Sequence[int | str]) -> tuple[str, type[BaseModel] | None]:
    """The readable path (``then[1].url``) for a pydantic location, and the model that owns
    its last field. Discriminated-union tags and plain-union member names are left out."""
    path = ""
    current: Any = Rule
    owner: type[BaseModel] | None = None
    for segment in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = current.model_fields.get(str(segment))
            path += f".{segment}" if path else str(segment)
            current = field.annotation if field else None
        elif get_origin(current) in (tuple, list) and isinstance(segment, int):
            path += f"[{segment}]"
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            path += f".{segment}"
            current = get_args(current)[1]
        elif _is_union(current):
            current = _variant(current, segment)
        else:
            path += f".{segment}" if path else str(segment)
            current = None
    return path, owner


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        annotation = get_args(annotation)[0]
    if _is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _variant(union: Any, tag: int | str) -> Any:
    """The member a discriminated-union tag selects; None for a plain union's member name."""
    for member in get_args(union):
        member = _unwrap(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get("action")
            if field is not None and field.default == tag:
                return member
    return None
