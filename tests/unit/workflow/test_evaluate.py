"""Evaluation: priority order, stop, filters, failures recorded, idempotency keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from processors.workflow import evaluate, idempotency_key, order_rules
from processors.workflow.actions import WORKFLOW_OPTION
from schemas.rules import AddTags, IncrementTrait, RemoveTags, SetTrait
from tests.unit.workflow._support import T0, event, profile, rule


def tag(name: str) -> dict[str, Any]:
    return {"action": "tag", "tags": [name]}


def test_rules_run_by_priority_high_first_then_by_id() -> None:
    rules = [
        rule("b", priority=5),
        rule("a", priority=5),
        rule("low", priority=-1),
        rule("high", priority=100),
        rule("off", priority=1000, enabled=False),
    ]
    assert [r.id for r in order_rules(rules)] == ["high", "a", "b", "low"]
    result = evaluate(rules, event())
    assert result.matched_rules == ("high", "a", "b", "low")
    assert [op.tags for op in result.profile_patch.ops] == [("high",), ("a",), ("b",), ("low",)]  # type: ignore[union-attr]


def test_stop_ends_evaluation_after_its_rule() -> None:
    rules = [
        rule("first", priority=3),
        rule("stopper", priority=2, then=[tag("stopper"), {"action": "stop"}]),
        rule("never", priority=1),
    ]
    result = evaluate(rules, event())
    assert result.matched_rules == ("first", "stopper")
    assert result.stopped_by == "stopper"
    assert [(o.rule_id, o.action, o.status) for o in result.outcomes] == [
        ("first", "tag", "planned"),
        ("stopper", "tag", "planned"),
        ("stopper", "stop", "stopped"),
    ]


def test_stop_in_a_rule_that_does_not_match_stops_nothing() -> None:
    rules = [
        rule("stopper", priority=2, then=[{"action": "stop"}], when={"event_types": ["refund"]}),
        rule("runs", priority=1),
    ]
    result = evaluate(rules, event())
    assert (result.matched_rules, result.stopped_by) == (("runs",), None)


@pytest.mark.parametrize(
    ("when", "matched"),
    [
        ({"event_types": ["purchase", "refund"]}, True),
        ({"event_types": ["refund"]}, False),
        ({"sources": ["web"]}, True),
        ({"sources": ["app"]}, False),
        ({"event_types": "purchase", "sources": "web"}, True),
        (
            {"event_types": ["purchase"], "condition": {"==": [{"var": "event.session_id"}, "x"]}},
            False,
        ),
        ({}, True),
    ],
)
def test_type_source_and_condition_filters(when: dict[str, Any], matched: bool) -> None:
    assert bool(evaluate([rule("r", when=when)], event()).matched_rules) is matched


def test_a_failing_action_is_recorded_and_the_rest_go_on() -> None:
    then = [
        {"action": "set_trait", "trait": "total", "value": "{{ event.properties.total }}"},
        tag("still-tagged"),
    ]
    rules = [rule("a", priority=2, then=then), rule("b", priority=1)]
    result = evaluate(rules, event(properties={}))
    failed, planned, other = result.outcomes
    assert (failed.status, failed.action, failed.action_index) == ("failed", "set_trait", 0)
    assert failed.error is not None and "event.properties.total is missing" in failed.error
    assert (planned.status, other.rule_id) == ("planned", "b")
    assert result.profile_patch.ops == (AddTags(tags=("still-tagged",)), AddTags(tags=("b",)))


def test_later_rules_see_earlier_profile_changes() -> None:
    rules = [
        rule(
            "tagger",
            priority=2,
            then=[tag("vip"), {"action": "increment_trait", "trait": "n", "by": 2}],
        ),
        rule(
            "follower",
            priority=1,
            when={
                "condition": {
                    "and": [
                        {"contains": [{"var": "profile.tags"}, "vip"]},
                        {"==": [{"var": "profile.traits.n"}, 3]},
                    ]
                }
            },
            then=[{"action": "untag", "tags": "newbie"}],
        ),
    ]
    start = profile(["newbie"], n=1)
    result = evaluate(rules, event(), start)
    assert result.matched_rules == ("tagger", "follower")
    assert result.profile_patch.ops == (
        AddTags(tags=("vip",)),
        IncrementTrait(trait="n", by=2),
        RemoveTags(tags=("newbie",)),
    )
    assert start == profile(["newbie"], n=1)  # the caller's profile is not changed


def test_values_from_paths_and_templates() -> None:
    then: list[dict[str, Any]] = [
        {"action": "set_trait", "trait": "last.total", "value_from": "event.properties.total"},
        {"action": "set_trait", "trait": "last.label", "value": "order {{ event.properties.id }}"},
        {
            "action": "set_trait",
            "trait": "last.obj",
            "value": {"t": "{{ event.properties.total }}", "k": [1]},
        },
        {
            "action": "append_trait",
            "trait": "orders",
            "value_from": "event.properties.id",
            "unique": True,
        },
        {"action": "increment_trait", "trait": "spent", "by": "{{ event.properties.total }}"},
        {"action": "tag", "tags": ["plan-{{ event.properties.plan }}"]},
    ]
    props = {"total": 12.5, "id": "o-1", "plan": "pro"}
    result = evaluate([rule("r", then=then)], event(properties=props))
    assert [o.status for o in result.outcomes] == ["planned"] * 6
    ops = result.profile_patch.ops
    assert ops[0] == SetTrait(trait="last.total", value=12.5)
    assert ops[1] == SetTrait(trait="last.label", value="order o-1")
    assert ops[2] == SetTrait(trait="last.obj", value={"t": 12.5, "k": [1]})
    assert ops[4] == IncrementTrait(trait="spent", by=12.5)
    assert ops[5] == AddTags(tags=("plan-pro",))


@pytest.mark.parametrize(
    ("then", "error"),
    [
        (
            {"action": "increment_trait", "trait": "n", "by": "{{ event.properties.word }}"},
            "not a number",
        ),
        ({"action": "set_trait", "trait": "n", "value_from": "event.properties.nope"}, "missing"),
        ({"action": "tag", "tags": ["{{ event.properties.blank }}"]}, "1-200 characters"),
        (
            {"action": "emit_event", "type": "{{ event.properties.blank }}"},
            "emitted event is invalid",
        ),
        (
            {
                "action": "webhook",
                "url": "https://h.example/",
                "headers": {"X-A": "{{ event.properties.crlf }}"},
            },
            "line break",
        ),
        (
            {
                "action": "webhook",
                "url": "https://h.example/",
                "headers": {"X-A": "{{ event.properties.ref }}"},
            },
            "rendered to a secret reference",
        ),
    ],
)
def test_render_failures_name_the_problem(then: dict[str, Any], error: str) -> None:
    props = {"word": "many", "blank": " ", "crlf": "a\r\nHost: evil", "ref": "${secret:DB}"}
    [outcome] = evaluate([rule("r", then=[then])], event(properties=props)).outcomes
    assert outcome.status == "failed"
    assert outcome.error is not None and error in outcome.error


def test_idempotency_keys_are_deterministic_and_distinct() -> None:
    key = idempotency_key("rule-a", 1, "evt-1")
    assert key == idempotency_key("rule-a", 1, "evt-1")
    assert len(key) == 32 and int(key, 16) >= 0
    others = {
        idempotency_key("rule-a", 2, "evt-1"),
        idempotency_key("rule-b", 1, "evt-1"),
        idempotency_key("rule-a", 1, "evt-2"),
        idempotency_key("rule-a1", 1, "evt-"),  # no ambiguity from concatenation
    }
    assert key not in others and len(others) == 4


def test_replays_plan_the_same_keys_and_event_ids() -> None:
    then: list[dict[str, Any]] = [
        {
            "action": "webhook",
            "url": "https://hooks.example.com/x",
            "body": {"e": "{{ event.id }}"},
        },
        {"action": "emit_event", "type": "again"},
        {"action": "produce", "topic": "out.topic"},
    ]
    rules = [rule("r", then=then)]
    first = evaluate(rules, event())
    second = evaluate(rules, event())
    assert first == second
    call, emitted, produced = first.actions
    assert call.idempotency_key == idempotency_key("r", 0, "evt-1")
    assert emitted.event.id == f"wf-{idempotency_key('r', 1, 'evt-1')}"  # type: ignore[union-attr]
    assert produced.value["id"] == "evt-1"  # type: ignore[union-attr,index,call-overload]
    assert [o.idempotency_key for o in first.outcomes] == [a.idempotency_key for a in first.actions]


def test_emitted_events_carry_their_origin_and_stop_at_the_depth_limit() -> None:
    rules = [
        rule("loop", then=[{"action": "emit_event", "type": "purchase", "properties": {"n": 1}}])
    ]
    current = event()
    for depth in (1, 2, 3):
        [emitted] = evaluate(rules, current).emitted_events
        assert emitted.options[WORKFLOW_OPTION]["depth"] == depth
        assert emitted.options[WORKFLOW_OPTION]["caused_by"] == current.id
        assert (emitted.profile_id, emitted.session_id) == ("prof-1", "sess-1")
        current = emitted
    result = evaluate(rules, current)
    assert result.emitted_events == ()
    assert result.outcomes[0].status == "failed"
    assert "at most 3" in (result.outcomes[0].error or "")


def test_now_defaults_to_received_at_and_can_be_injected() -> None:
    rules = [rule("r", then=[{"action": "emit_event", "type": "x"}])]
    assert evaluate(rules, event()).emitted_events[0].received_at == T0
    later = T0 + timedelta(hours=1)
    assert evaluate(rules, event(), now=later).emitted_events[0].received_at == later


def test_no_rules_no_result() -> None:
    result = evaluate([], event())
    assert (result.event_id, result.matched_rules, result.actions, result.outcomes) == (
        "evt-1",
        (),
        (),
        (),
    )
