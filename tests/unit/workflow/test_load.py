"""Rule files: all or nothing, and every problem named with rule, field and what is valid."""

from __future__ import annotations

import textwrap

import orjson
import pytest

from processors.workflow import RuleFileError, load_rules
from schemas.rules import Rule, RuleRecord, TagAction, rule_key
from tests.unit.workflow._support import EXAMPLES, T0


def problems(text: str, format: str = "yaml") -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_rules(textwrap.dedent(text), format)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"{len(caught.value.problems)} problem")
    return [str(p) for p in caught.value.problems]


GOOD = """
  - id: good
    name: Good
    when: {event_types: [purchase]}
    then: [{action: tag, tags: [ok]}]
"""


def test_the_issue_example_message() -> None:
    found = problems(
        """
        rules:
          - id: big-spender
            name: Big spender
            when: {event_types: [purchase]}
            then:
              - {action: tag, tags: [big]}
              - {action: tagg, tags: [x]}
        """
    )
    assert found == [
        "rule \"big-spender\" then[1].action: 'tagg' is not one of tag, untag, set_trait, "
        "unset_trait, increment_trait, append_trait, emit_event, webhook, produce, stop"
    ]


def test_every_problem_of_every_rule_is_listed_and_no_rule_loads() -> None:
    found = problems(
        """
        rules:
          - id: good
            name: Good
            when: {event_types: [purchase]}
            then: [{action: tag, tags: [ok]}]
          - id: broken
            name: ""
            priority: high
            enabled: true
            when:
              event_types: [purchase]
              condition: {">": [{var: event.properties.amount}], "==": [1, 1]}
            then:
              - {action: set_trait, trait: "bad trait", value: 1}
              - {action: webhook, url: "ftp://x.example.com", method: FETCH}
              - {action: tag, tagz: [x]}
              - {action: produce, topic: trackflow.events.raw.v1}
              - {}
          - name: no id
            when: {}
            then: []
          - just a string
        """
    )
    assert found == [
        "rule \"broken\" name: String should have at least 1 character (got '')",
        'rule "broken" priority: Input should be a valid integer, unable to parse string as an '
        "integer (got 'high')",
        'rule "broken" when.condition: a condition is an object with exactly one operator (==, '
        "!=, <, <=, >, >=, and, or, not, exists, in, contains, match), got {'>': [{'var': "
        "'event.properties.amount'}], '==': [1, 1]}",
        "rule \"broken\" then[0].trait: 'bad trait' is not a trait path (1-8 names of letters, "
        "digits, '_', '-' separated by '.', like 'loyalty.points')",
        "rule \"broken\" then[1].method: 'FETCH' is not one of 'GET', 'POST', 'PUT', 'PATCH' or "
        "'DELETE'",
        "rule \"broken\" then[1].url: 'ftp' is not a webhook scheme (http, https)",
        'rule "broken" then[2].tags: required field is missing',
        'rule "broken" then[2].tagz: unknown field (valid here: action, tags)',
        "rule \"broken\" then[3].topic: 'trackflow.events.raw.v1' is one of the pipeline's own "
        "topics ('trackflow.*'); use emit_event to send an event back into the pipeline",
        'rule "broken" then[4].action: missing; one of tag, untag, set_trait, unset_trait, '
        "increment_trait, append_trait, emit_event, webhook, produce, stop",
        "rule #2 id: required field is missing",
        "rule #2 then: needs at least 1 item(s), got 0",
        "rule #3: a rule is a mapping with id, name, when, then",
    ]


def test_condition_problems_carry_their_path_inside_the_condition() -> None:
    found = problems(
        """
        - id: c
          name: C
          when:
            condition:
              and:
                - ">": [{var: event.properties.amount}]
                - match: [{var: event.properties.email}, "(a)\\\\1"]
                - "==": [{var: props.x}, 1]
          then: [{action: stop}]
        """
    )
    assert [f.split(":")[0] for f in found] == [
        'rule "c" when.condition.and[0].>',
        'rule "c" when.condition.and[1].match[1]',
        'rule "c" when.condition.and[2].==[0].var',
    ]
    assert "backreferences and lookaround are not supported" in found[1]
    assert "must start with one of event, profile, session" in found[2]


@pytest.mark.parametrize(
    ("action", "path", "message"),
    [
        (
            {"url": "https://h.example/", "headers": {"Authorization": "Bearer abc123"}},
            "then[0].headers",
            "Authorization: a literal credential is not allowed in a rule file",
        ),
        (
            {"url": "https://h.example/", "headers": {"X-Api-Key": "{{ event.properties.key }}"}},
            "then[0].headers",
            "X-Api-Key: a literal credential is not allowed",
        ),
        (
            {"url": "https://h.example/", "headers": {"X-A": "${secret:A} {{ event.id }}"}},
            "then[0].headers",
            "cannot also use {{ placeholders }}",
        ),
        (
            {"url": "https://h.example/", "headers": {"X-A": "${secret:bad-name}"}},
            "then[0].headers",
            "malformed secret reference",
        ),
        (
            {"url": "https://h.example/", "headers": {"Host": "evil.example"}},
            "then[0].headers",
            "set by the webhook deliverer",
        ),
        (
            {"url": "https://h.example/", "headers": {"Bad Name": "x"}},
            "then[0].headers",
            "not a header name",
        ),
        (
            {"url": "https://h.example/", "body": {"token": "${secret:TOKEN}"}},
            "then[0].body",
            "only in webhook header values",
        ),
        ({"url": "https://h.example/?t=${secret:TOKEN}"}, "then[0].url", "only in webhook header"),
        ({"url": "https://u:p@h.example/"}, "then[0].url", "credentials in the URL"),
        ({"url": "https://{{ event.properties.host }}/x"}, "then[0].url", "only after the host"),
        (
            {"url": "https://api.{{ event.properties.host }}/x"},
            "then[0].url",
            "only after the host",
        ),
        ({"url": "javascript:alert(1)"}, "then[0].url", "not a webhook scheme"),
        ({"url": "/relative"}, "then[0].url", "not a webhook scheme"),
        (
            {"url": "https://h.example/", "timeout_seconds": 0},
            "then[0].timeout_seconds",
            "greater than 0",
        ),
        (
            {"url": "https://h.example/", "max_attempts": 100},
            "then[0].max_attempts",
            "less than or equal to 20",
        ),
    ],
)
def test_webhook_validation(action: dict[str, object], path: str, message: str) -> None:
    rule = {"id": "w", "name": "W", "when": {}, "then": [{"action": "webhook", **action}]}
    found = problems(orjson.dumps([rule]).decode(), "json")
    assert any(f.startswith(f'rule "w" {path}: ') and message in f for f in found), found


def test_secret_references_in_headers_are_accepted() -> None:
    rule = {
        "id": "w",
        "name": "W",
        "when": {},
        "then": [
            {
                "action": "webhook",
                "url": "https://h.example/{{ event.id }}",
                "headers": {
                    "Authorization": "Bearer ${secret:CRM_TOKEN}",
                    "X-Id": "{{ event.id }}",
                },
            }
        ],
    }
    [loaded] = load_rules(orjson.dumps(rule), "json")
    assert loaded.id == "w"


@pytest.mark.parametrize(
    ("then", "path", "message"),
    [
        (
            [{"action": "stop"}, {"action": "tag", "tags": "x"}],
            "then",
            "'stop' may appear once, as the last action",
        ),
        ([{"action": "set_trait", "trait": "a"}], "then[0]", "give exactly one of value"),
        (
            [{"action": "set_trait", "trait": "a", "value": 1, "value_from": "event.id"}],
            "then[0]",
            "exactly one",
        ),
        (
            [{"action": "set_trait", "trait": "a", "value_from": "evnt.id"}],
            "then[0].value_from",
            "must start with",
        ),
        (
            [{"action": "increment_trait", "trait": "a", "by": True}],
            "then[0].by",
            "by is a finite number or a template",
        ),
        (
            [{"action": "emit_event", "type": "x", "properties": [1]}],
            "then[0].properties",
            "is an object",
        ),
        ([{"action": "tag", "tags": ["{{ event.x"]}], "then[0].tags[0]", "unclosed"),
        ([{"action": "produce", "topic": "bad topic"}], "then[0].topic", "not a safe topic name"),
        (
            [{"action": "produce", "topic": "_internal"}],
            "then[0].topic",
            "starting with a letter or digit",
        ),
        (
            [{"action": "append_trait", "trait": "a", "value": 1, "max_items": 0}],
            "then[0].max_items",
            "greater than or equal to 1",
        ),
    ],
)
def test_action_validation(then: list[dict[str, object]], path: str, message: str) -> None:
    rule = {"id": "a", "name": "A", "when": {}, "then": then}
    found = problems(orjson.dumps([rule]).decode(), "json")
    assert any(f.startswith(f'rule "a" {path}: ') and message in f for f in found), found


def test_duplicate_ids_are_refused() -> None:
    found = problems("rules:" + GOOD + GOOD)
    assert found == ['rule "good" id: duplicate id (also rule #0)']


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ("", "yaml", "file: the file is empty"),
        (
            "rules: [\n  - {id: x",
            "yaml",
            "file: invalid YAML: expected the node content, but found '-' at line 2, column 3",
        ),
        ("a: &x [1]\nb: *x\n", "yaml", "file: YAML aliases (*x) are not allowed (line 2)"),
        ("42", "yaml", "file: the file holds a int"),
        ("rules: {id: x}", "yaml", "file rules: 'rules' is a list of rules, got dict"),
        ("rules: []\nversion: 2", "yaml", "file: unknown top-level keys version (valid: rules)"),
        ("d: 2026-02-30", "yaml", "file: invalid YAML value"),
        ("{", "json", "file: invalid JSON"),
        ("[]", "toml", "file: 'toml' is not a rule file format (yaml, json)"),
        ("- {1: x, id: k}", "yaml", 'rule "k": key 1 is not a string; quote it'),
        ("- {id: k, priority: .inf}", "yaml", 'rule "k" priority: inf is not a finite number'),
        ("- {id: k, name: !!binary aGk=}", "yaml", 'rule "k" name: a bytes is not a JSON value'),
    ],
)
def test_file_level_problems(text: str, format: str, message: str) -> None:
    found = problems(text, format)
    assert found[0].startswith(message), found


def test_invalid_utf8_and_oversized_files() -> None:
    with pytest.raises(RuleFileError, match="not UTF-8"):
        load_rules(b"rules: [\xff]", "yaml")
    with pytest.raises(RuleFileError, match="larger than"):
        load_rules("#" * (1 << 20 + 1), "yaml")


def test_accepted_shapes() -> None:
    single = "{id: one, name: One, when: {}, then: [{action: tag, tags: x}]}"
    assert [r.id for r in load_rules(single, "yaml")] == ["one"]
    assert [r.id for r in load_rules("rules:" + GOOD, "yaml")] == ["good"]
    assert [r.id for r in load_rules(GOOD, "yaml")] == ["good"]
    assert load_rules("rules: []", "yaml") == []
    assert load_rules(b"[]", "json") == []


def test_yaml_dates_become_iso_strings() -> None:
    text = """
    - id: d
      name: D
      when: {condition: {">": [{var: event.received_at}, {date: 2026-01-31}]}}
      then: [{action: set_trait, trait: since, value: 2026-01-31}]
    """
    [loaded] = load_rules(textwrap.dedent(text), "yaml")
    assert loaded.then[0].value == "2026-01-31"  # type: ignore[union-attr]


def test_yaml_and_json_load_the_same_rules() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        from_yaml = load_rules(path.read_text(), "yaml")
        as_json = orjson.dumps({"rules": [r.model_dump(mode="json") for r in from_yaml]})
        assert load_rules(as_json, "json") == from_yaml


def test_rule_records_round_trip_through_the_config_topic_format() -> None:
    [loaded] = load_rules(GOOD, "yaml")
    record = RuleRecord(rule=loaded, updated_at=T0)
    wire = orjson.dumps(record.model_dump(mode="json"))
    assert RuleRecord.model_validate_json(wire) == record
    assert rule_key(loaded.id) == b"rule:good"
    assert Rule.model_json_schema()["title"] == "Rule"


def test_actions_can_be_built_in_code() -> None:
    assert TagAction(tags=("x",)).action == "tag"
