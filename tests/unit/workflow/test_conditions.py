"""Every condition operator, table-driven; dates; regex limits; parse problems."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from processors.workflow.conditions import as_number, json_equal, matches
from processors.workflow.scope import Scope
from schemas.rules import (
    MAX_MATCH_INPUT,
    MAX_PATTERN_LENGTH,
    ConditionNode,
    dump_condition,
    parse_condition,
    parse_date_text,
)
from tests.unit.workflow._support import T0, event

PROPS: dict[str, Any] = {
    "amount": 150,
    "price": 9.5,
    "count_text": "42",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "flag": True,
    "nothing": None,
    "items": ["a", "b", 3],
    "nested": {"level": {"deep": "yes"}},
    "when": "2026-02-15T08:00:00+00:00",
    "day": "2026-02-15",
    "naive": "2026-02-15T08:00:00",
    "not_a_date": "yesterday",
}
PROFILE = {"id": "prof-1", "tags": ["vip", "newsletter"], "traits": {"score": 7}}
SESSION = {"id": "sess-1", "page_views": 3}


def scope() -> Scope:
    return Scope.of(event(properties=PROPS), PROFILE, SESSION, T0)


def check(raw: object) -> bool:
    node, problems = parse_condition(raw)
    assert problems == [], problems
    assert node is not None
    return matches(node, scope())


def v(path: str) -> dict[str, str]:
    return {"var": path}


CASES: list[tuple[str, object, bool]] = [
    # == and !=
    ("== number", {"==": [v("event.properties.amount"), 150]}, True),
    ("== int and float", {"==": [v("event.properties.amount"), 150.0]}, True),
    ("== string", {"==": [v("event.type"), "purchase"]}, True),
    ("== other string", {"==": [v("event.type"), "refund"]}, False),
    ("== bool is not 1", {"==": [v("event.properties.flag"), 1]}, False),
    ("== bool", {"==": [v("event.properties.flag"), True]}, True),
    ("== numeric string is not a number", {"==": [v("event.properties.count_text"), 42]}, False),
    ("== missing is null", {"==": [v("event.properties.absent"), None]}, True),
    ("== null", {"==": [v("event.properties.nothing"), None]}, True),
    ("== list", {"==": [v("event.properties.items"), ["a", "b", 3]]}, True),
    ("== two fields", {"==": [v("profile.id"), v("event.profile_id")]}, True),
    ("!= ", {"!=": [v("event.type"), "refund"]}, True),
    ("!= equal", {"!=": [v("event.properties.amount"), 150]}, False),
    ("!= missing", {"!=": [v("event.properties.absent"), "x"]}, True),
    # ordering
    ("> number", {">": [v("event.properties.amount"), 100]}, True),
    ("> equal", {">": [v("event.properties.amount"), 150]}, False),
    (">= equal", {">=": [v("event.properties.amount"), 150]}, True),
    ("< float", {"<": [v("event.properties.price"), 10]}, True),
    ("<= float", {"<=": [v("event.properties.price"), 9.5]}, True),
    ("< not", {"<": [v("event.properties.price"), 9]}, False),
    ("> numeric string", {">": [v("event.properties.count_text"), 41]}, True),
    ("> non-numeric string", {">": [v("event.properties.name"), 1]}, False),
    ("< non-numeric string", {"<": [v("event.properties.name"), 1]}, False),
    ("> missing", {">": [v("event.properties.absent"), 0]}, False),
    ("< missing", {"<": [v("event.properties.absent"), 0]}, False),
    ("> bool", {">": [v("event.properties.flag"), 0]}, False),
    ("> strings are not ordered", {">": ["b", "a"]}, False),
    ("> session field", {">": [v("session.page_views"), 2]}, True),
    ("> profile trait", {">=": [v("profile.traits.score"), 7]}, True),
    # and / or / not
    ("and all true", {"and": [{"==": [1, 1]}, {">": [2, 1]}]}, True),
    ("and one false", {"and": [{"==": [1, 1]}, {">": [1, 2]}]}, False),
    ("or one true", {"or": [{"==": [1, 2]}, {">": [2, 1]}]}, True),
    ("or none true", {"or": [{"==": [1, 2]}, {">": [1, 2]}]}, False),
    ("not", {"not": {"==": [1, 2]}}, True),
    ("not list form", {"not": [{"==": [1, 1]}]}, False),
    # exists
    ("exists", {"exists": v("event.properties.email")}, True),
    ("exists nested", {"exists": [v("event.properties.nested.level.deep")]}, True),
    ("exists missing", {"exists": v("event.properties.absent")}, False),
    ("exists null", {"exists": v("event.properties.nothing")}, False),
    ("exists list index", {"exists": v("event.properties.items.1")}, True),
    ("exists list index out of range", {"exists": v("event.properties.items.9")}, False),
    ("exists through a scalar", {"exists": v("event.properties.name.first")}, False),
    # in / contains
    ("in list", {"in": [v("event.type"), ["purchase", "refund"]]}, True),
    ("in list no", {"in": [v("event.type"), ["refund"]]}, False),
    ("in list number", {"in": [3, v("event.properties.items")]}, True),
    ("in list bool is not 1", {"in": [True, [1, 2]]}, False),
    ("in substring", {"in": ["Love", v("event.properties.name")]}, True),
    ("in substring no", {"in": ["love", v("event.properties.name")]}, False),
    ("in non-collection", {"in": ["a", v("event.properties.amount")]}, False),
    ("in missing", {"in": ["a", v("event.properties.absent")]}, False),
    ("contains tag", {"contains": [v("profile.tags"), "vip"]}, True),
    ("contains tag no", {"contains": [v("profile.tags"), "churned"]}, False),
    ("contains substring", {"contains": [v("event.properties.email"), "@example."]}, True),
    ("contains number in string", {"contains": [v("event.properties.name"), 1]}, False),
    # match
    ("match", {"match": [v("event.properties.email"), "@example\\.com$"]}, True),
    ("match no", {"match": [v("event.properties.email"), "^bob"]}, False),
    ("match case", {"match": [v("event.properties.name"), "^ada"]}, False),
    ("match ignore case", {"match": [v("event.properties.name"), "^ada", "i"]}, True),
    ("match non-string", {"match": [v("event.properties.amount"), "1"]}, False),
    ("match missing", {"match": [v("event.properties.absent"), ".*"]}, False),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator(raw: object, expected: bool) -> None:
    assert check(raw) is expected


def test_every_operator_is_covered_by_the_table() -> None:
    from schemas.rules import OPERATORS

    used = {next(iter(raw)) for _, raw, _ in CASES if isinstance(raw, dict)}
    assert used == set(OPERATORS)


DATE_CASES: list[tuple[str, object, bool]] = [
    ("iso datetime after", {">": [v("event.properties.when"), {"date": "2026-02-01"}]}, True),
    ("iso datetime before", {"<": [v("event.properties.when"), {"date": "2026-02-01"}]}, False),
    (
        "date-only is midnight UTC",
        {"==": [v("event.properties.day"), {"date": "2026-02-15"}]},
        True,
    ),
    (
        "timezones compare by instant",
        {"==": [v("event.properties.when"), {"date": "2026-02-15T09:00:00+01:00"}]},
        True,
    ),
    (
        "naive means UTC",
        {"==": [v("event.properties.naive"), {"date": "2026-02-15T08:00:00Z"}]},
        True,
    ),
    ("received_at within 30 days", {">=": [v("event.received_at"), {"date": "now-30d"}]}, True),
    (
        "15 Feb is within 30 days of 1 Mar",
        {">": [v("event.properties.when"), {"date": "now-30d"}]},
        True,
    ),
    ("15 Feb is not within 7 days", {">": [v("event.properties.when"), {"date": "now-7d"}]}, False),
    ("hours", {"<": [v("event.properties.when"), {"date": "now-2h"}]}, True),
    ("weeks", {">": [v("event.properties.when"), {"date": "now - 3w"}]}, True),
    ("future", {"<": [v("event.received_at"), {"date": "now+1m"}]}, True),
    ("now equals received_at", {"==": [v("event.received_at"), {"date": "now"}]}, True),
    ("a date field wrapped", {"<": [{"date": v("event.properties.day")}, "2026-03-01"]}, True),
    (
        "not a date is false",
        {">": [v("event.properties.not_a_date"), {"date": "2000-01-01"}]},
        False,
    ),
    ("not a date is !=", {"!=": [v("event.properties.not_a_date"), {"date": "2000-01-01"}]}, True),
    ("missing is false", {"<": [v("event.properties.absent"), {"date": "now"}]}, False),
    ("numbers are not dates", {"<": [v("event.properties.amount"), {"date": "now"}]}, False),
    (
        "without date, strings are not ordered",
        {"<": [v("event.properties.day"), "2026-03-01"]},
        False,
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in DATE_CASES], ids=[c[0] for c in DATE_CASES]
)
def test_dates(raw: object, expected: bool) -> None:
    assert check(raw) is expected


def test_relative_dates_use_the_evaluation_clock() -> None:
    node, _ = parse_condition({">": [v("event.properties.when"), {"date": "now-30d"}]})
    later = Scope.of(event(properties=PROPS), None, None, T0 + timedelta(days=60))
    assert matches(node, scope()) is True
    assert matches(node, later) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", timedelta(0)),
        ("now-30d", timedelta(days=-30)),
        ("now+2h", timedelta(hours=2)),
        ("now - 15 m", timedelta(minutes=-15)),
        ("now-10s", timedelta(seconds=-10)),
        ("now-1w", timedelta(weeks=-1)),
    ],
)
def test_relative_date_syntax(text: str, expected: timedelta) -> None:
    assert parse_date_text(text) == expected


@pytest.mark.parametrize(
    "text", ["now-30", "now-30y", "yesterday", "2026-13-01", "now-9999999d", ""]
)
def test_bad_dates_are_refused_with_what_is_valid(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO-8601|at most"):
        parse_date_text(text)


def test_regex_input_longer_than_the_cap_never_matches() -> None:
    node, _ = parse_condition({"match": [v("event.properties.text"), "a"]})
    long = Scope.of(event(properties={"text": "a" * (MAX_MATCH_INPUT + 1)}), None, None, T0)
    short = Scope.of(event(properties={"text": "a" * MAX_MATCH_INPUT}), None, None, T0)
    assert matches(node, long) is False
    assert matches(node, short) is True


def test_catastrophic_patterns_run_in_linear_time() -> None:
    """RE2 has no backtracking: the classic ReDoS patterns answer at once."""
    import time

    text = "a" * MAX_MATCH_INPUT + "!"
    for pattern in ["(a+)+$", "(a|aa)*$", "a*a*a*a*a*b", "(\\w+\\s?)*$"]:
        node, problems = parse_condition({"match": [v("event.properties.text"), pattern]})
        assert problems == []
        started = time.perf_counter()
        matches(node, Scope.of(event(properties={"text": text}), None, None, T0))
        assert time.perf_counter() - started < 0.5, pattern


PROBLEMS: list[tuple[str, object, str, str]] = [
    ("unknown operator", {"=~": [1, 2]}, "", "'=~' is not one of ==, !=, <, <=, >, >=, and"),
    ("two operators", {"==": [1, 1], "!=": [1, 2]}, "", "exactly one operator"),
    ("not an object", "amount > 100", "", "exactly one operator"),
    ("arity", {"==": [1]}, ".==", "'==' takes two operands, got 1"),
    ("empty and", {"and": []}, ".and", "at least one condition"),
    ("not arity", {"not": [{"==": [1, 1]}, {"==": [1, 1]}]}, ".not", "one condition"),
    ("exists literal", {"exists": "event.x"}, ".exists", "takes a field"),
    (
        "root",
        {"==": [v("properties.amount"), 1]},
        ".==[0].var",
        "must start with one of event, profile, session",
    ),
    ("empty segment", {"==": [v("event..amount"), 1]}, ".==[0].var", "empty or invalid segment"),
    ("var not a string", {"==": [{"var": 3}, 1]}, ".==[0].var", "is a string like"),
    ("nested in and", {"and": [{"==": [1, 1]}, {">": [1]}]}, ".and[1].>", "takes two operands"),
    ("condition as value", {"==": [{"==": [1, 1]}, True]}, ".==[0]", "cannot be used as a value"),
    ("bad date", {">": [v("event.received_at"), {"date": "last week"}]}, ".>[1].date", "ISO-8601"),
    (
        "date number",
        {">": [v("event.received_at"), {"date": 5}]},
        ".>[1].date",
        "a date is a string",
    ),
    (
        "bad regex",
        {"match": [v("event.type"), "(unclosed"]},
        ".match[1]",
        "not a valid RE2 expression",
    ),
    ("backreference", {"match": [v("event.type"), "(a)\\1"]}, ".match[1]", "backreferences"),
    ("lookahead", {"match": [v("event.type"), "a(?=b)"]}, ".match[1]", "lookaround"),
    (
        "long pattern",
        {"match": [v("event.type"), "a" * (MAX_PATTERN_LENGTH + 1)]},
        ".match[1]",
        f"at most {MAX_PATTERN_LENGTH}",
    ),
    (
        "pattern from a field",
        {"match": [v("event.type"), v("event.id")]},
        ".match[1]",
        "literal string",
    ),
    ("flags", {"match": [v("event.type"), "a", "x"]}, ".match[2]", "'' or 'i'"),
    ("list of objects", {"in": [1, [{"a": 1}]]}, ".in[1]", "JSON scalars"),
    (
        "too deep",
        {
            "not": {
                "not": {
                    "not": {
                        "not": {
                            "not": {
                                "not": {
                                    "not": {
                                        "not": {
                                            "not": {
                                                "not": {
                                                    "not": {
                                                        "not": {
                                                            "not": {
                                                                "not": {
                                                                    "not": {
                                                                        "not": {
                                                                            "not": {"==": [1, 1]}
                                                                        }
                                                                    }
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
        ".not.not",
        "at most 16 levels",
    ),
]


@pytest.mark.parametrize(
    ("raw", "at", "message"), [c[1:] for c in PROBLEMS], ids=[c[0] for c in PROBLEMS]
)
def test_parse_problems_name_the_place_and_what_is_valid(
    raw: object, at: str, message: str
) -> None:
    node, problems = parse_condition(raw)
    assert node is None
    assert any(path.startswith(at) and message in text for path, text in problems), problems


def test_every_problem_is_reported_not_just_the_first() -> None:
    _, problems = parse_condition(
        {"and": [{"=~": [1, 2]}, {"match": [v("event.type"), "("]}, {"==": [v("x.y"), 1]}]}
    )
    assert [p for p, _ in problems] == [".and[0]", ".and[1].match[1]", ".and[2].==[0].var"]


ROUND_TRIP = [raw for _, raw, _ in CASES + DATE_CASES]


@pytest.mark.parametrize("raw", ROUND_TRIP)
def test_dump_parses_back_to_the_same_tree(raw: object) -> None:
    node, _ = parse_condition(raw)
    assert node is not None
    again, problems = parse_condition(dump_condition(node))
    assert problems == []
    assert again == node


def test_no_condition_always_matches() -> None:
    none: ConditionNode | None = None
    assert matches(none, scope()) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (2.5, 2.5),
        ("42", 42),
        (" -1.5e3 ", -1500.0),
        (True, None),
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        (float("nan"), None),
        ("", None),
        (None, None),
        ([1], None),
    ],
)
def test_as_number(value: object, expected: object) -> None:
    assert as_number(value) == expected


def test_json_equal_distinguishes_bools_and_numbers() -> None:
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal({"a": [1, True]}, {"a": [True, 1]})
    assert not json_equal("1", 1)
