"""Property-based: no condition tree or event data makes ``evaluate`` raise, and no input
makes ``load_rules`` raise anything but RuleFileError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.workflow import RuleFileError, evaluate, load_rules
from schemas.rules import OPERATORS, Rule, dump_condition, parse_condition
from tests.unit.workflow._support import EXAMPLES, event

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PATHS = [
    "event.type",
    "event.id",
    "event.received_at",
    "event.properties.a",
    "event.properties.b.c",
    "event.properties.list.0",
    "event.context.x",
    "profile.tags",
    "profile.traits.n",
    "profile.traits.when",
    "session.id",
    "session.n",
    "event",
    "profile",
    "nope.x",
    "event..a",
    "",
]
TEXT = st.text(st.characters(codec=None), max_size=12)  # includes lone surrogates and NUL
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    TEXT,
    st.sampled_from(
        ["2026-01-01", "2026-03-01T10:00:00+02:00", "now-30d", "now+1h", "42", "1e999"]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)
OPERAND = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.builds(lambda p: {"var": p}, st.sampled_from(PATHS)),
    st.builds(
        lambda d: {"date": d},
        st.one_of(SCALARS, st.builds(lambda p: {"var": p}, st.sampled_from(PATHS))),
    ),
)
PATTERNS = st.sampled_from(["a", "^x", "(a+)+$", "[", "(a)\\1", ".*", "\\d{2,}", "(?i)ß", ""])


def _conditions() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.builds(
            lambda op, a, b: {op: [a, b]},
            st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "contains"]),
            OPERAND,
            OPERAND,
        ),
        st.builds(lambda p: {"exists": {"var": p}}, st.sampled_from(PATHS)),
        st.builds(
            lambda a, p, f: {"match": [a, p, *f]},
            OPERAND,
            PATTERNS,
            st.sampled_from([[], ["i"], ["x"]]),
        ),
        st.builds(lambda op, args: {op: args}, st.sampled_from([*OPERATORS, "??"]), JSON),
        JSON,
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda xs: {"and": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda xs: {"or": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=6,
    )


CONDITIONS = _conditions()


TEMPLATES = st.sampled_from(
    [
        "{{ event.properties.a }}",
        "x-{{ event.properties.b.c }}",
        "{{ profile.traits.n }}",
        '{{ session.id | default: "none" }}',
        "{{ event }}",
        "plain",
        "{{ event.properties.list }}",
    ]
)
ACTIONS = st.one_of(
    st.builds(lambda t: {"action": "tag", "tags": [t]}, TEMPLATES),
    st.builds(lambda t: {"action": "untag", "tags": [t]}, TEMPLATES),
    st.builds(lambda t: {"action": "set_trait", "trait": "a.b", "value": {"v": t}}, TEMPLATES),
    st.builds(
        lambda p: {"action": "set_trait", "trait": "c", "value_from": p},
        st.sampled_from(PATHS[:12]),
    ),
    st.builds(lambda t: {"action": "increment_trait", "trait": "n", "by": t}, TEMPLATES),
    st.builds(
        lambda t, u: {
            "action": "append_trait",
            "trait": "l",
            "value": t,
            "unique": u,
            "max_items": 2,
        },
        TEMPLATES,
        st.booleans(),
    ),
    st.just({"action": "unset_trait", "trait": "a"}),
    st.builds(lambda t: {"action": "emit_event", "type": t, "properties": {"x": t}}, TEMPLATES),
    st.builds(
        lambda t: {
            "action": "webhook",
            "url": "https://h.example/{{ event.properties.a }}",
            "headers": {"X-T": t},
            "body": [t],
        },
        TEMPLATES,
    ),
    st.builds(lambda t: {"action": "produce", "topic": "out", "key": t, "value": t}, TEMPLATES),
)


@st.composite
def rules(draw: st.DrawFn) -> list[Rule]:
    made = []
    for index in range(draw(st.integers(1, 3))):
        node, _ = parse_condition(draw(CONDITIONS))
        then = draw(st.lists(ACTIONS, min_size=1, max_size=3))
        if draw(st.booleans()):
            then.append({"action": "stop"})
        made.append(
            Rule.model_validate(
                {
                    "id": f"r{index}",
                    "name": "n",
                    "priority": draw(st.integers(-2, 2)),
                    "enabled": draw(st.booleans()),
                    "when": {"condition": dump_condition(node) if node else None},
                    "then": then,
                }
            )
        )
    return made


@SETTINGS
@given(raw=CONDITIONS)
def test_parsing_any_condition_gives_a_tree_or_problems_never_an_exception(raw: Any) -> None:
    node, problems = parse_condition(raw)
    assert (node is None) == bool(problems)
    if node is not None:
        assert parse_condition(dump_condition(node)) == (node, [])


@SETTINGS
@given(
    made=rules(),
    properties=st.dictionaries(st.sampled_from(["a", "b", "list", "x"]) | TEXT, JSON, max_size=5),
    the_profile=st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["tags", "traits", "id"]) | TEXT, JSON, max_size=4),
    ),
    the_session=st.one_of(st.none(), st.dictionaries(TEXT, JSON, max_size=3)),
    options=st.dictionaries(st.just("workflow"), JSON, max_size=1),
)
def test_evaluate_never_raises(
    made: list[Rule],
    properties: dict[str, Any],
    the_profile: dict[str, Any] | None,
    the_session: dict[str, Any] | None,
    options: dict[str, Any],
) -> None:
    result = evaluate(made, event(properties=properties, options=options), the_profile, the_session)
    assert len(result.outcomes) >= len(result.actions)
    assert all(o.status in ("planned", "failed", "stopped") for o in result.outcomes)
    assert (
        evaluate(made, event(properties=properties, options=options), the_profile, the_session)
        == result
    )


KEYS = st.sampled_from(
    [
        "id",
        "name",
        "when",
        "then",
        "enabled",
        "priority",
        "description",
        "action",
        "tags",
        "trait",
        "value",
        "value_from",
        "by",
        "type",
        "properties",
        "url",
        "method",
        "headers",
        "body",
        "topic",
        "key",
        "event_types",
        "sources",
        "condition",
        "rules",
        *OPERATORS,
        "var",
        "date",
    ]
)
RULEISH = st.recursive(
    SCALARS
    | st.sampled_from(
        ["tag", "stop", "webhook", "https://h.example/", "${secret:X}", "{{ event.id }}", "{{"]
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | TEXT, inner, max_size=5),
    max_leaves=20,
)


def _load_must_not_crash(text: str | bytes, fmt: str) -> None:
    try:
        loaded = load_rules(text, fmt)  # type: ignore[arg-type]
    except RuleFileError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
    else:
        assert all(isinstance(r, Rule) for r in loaded)


@SETTINGS
@given(document=RULEISH)
def test_load_rules_on_rule_shaped_yaml_raises_only_rule_file_error(document: Any) -> None:
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:  # not every generated string can be written as YAML
        return
    _load_must_not_crash(text, "yaml")


@SETTINGS
@given(text=st.text(max_size=300) | st.binary(max_size=200))
def test_load_rules_on_random_text_raises_only_rule_file_error(text: str | bytes) -> None:
    _load_must_not_crash(text, "yaml")
    _load_must_not_crash(text, "json")


@SETTINGS
@given(data=st.data())
def test_load_rules_on_damaged_examples_raises_only_rule_file_error(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sorted(EXAMPLES.glob("*.yaml"))))
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text = (
            text[:at] + data.draw(st.text(":-{}[]'\"#&*!|> \nabc0", max_size=4)) + text[at + cut :]
        )
    _load_must_not_crash(text, "yaml")
