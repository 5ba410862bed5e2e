"""Workflow rules: what a rule file and the config topic carry, and what evaluation plans.

A :class:`Rule` says *when* (event types, sources, a condition) and *then* (an ordered list
of actions). People write rules in YAML or JSON (``processors.workflow.load_rules``); they
travel on the compacted config topic as a :class:`RuleRecord` keyed ``rule:<id>``. Every
model validates completely on construction: a ``Rule`` that exists is a valid rule.

Conditions are a small JSON-logic-style language, parsed here into a typed tree (never
``eval``)::

    {"and": [{">": [{"var": "event.properties.amount"}, 100]},
             {"match": [{"var": "event.properties.email"}, "@example\\.com$", "i"]}]}

    operators  ==  !=  <  <=  >  >=  and  or  not  exists  in  contains  match
    operands   {"var": "<event|profile|session>.a.b"}  a JSON scalar  a list of scalars
               {"date": "2026-01-01" | "2026-01-01T10:00:00+02:00" | "now-30d" | {"var": ...}}

Templates are strings with ``{{ event.properties.total }}`` placeholders, optionally
``{{ path | default: <JSON scalar> }}``; a template that is one placeholder alone keeps the
value's JSON type. Secrets appear only in webhook headers, as ``${secret:NAME}``.

Regular expressions use RE2 (linear time, no backtracking): ReDoS cannot happen, and
patterns are capped at :data:`MAX_PATTERN_LENGTH` characters.
"""

from schemas.rules._conditions import (
    COMPARE_OPS,
    OPERATORS,
    AllOf,
    AnyOf,
    Compare,
    CompareOp,
    Condition,
    ConditionNode,
    Const,
    Contains,
    DateOf,
    Exists,
    In,
    Matches,
    Not,
    Operand,
    Var,
    dump_condition,
    parse_condition,
)
from schemas.rules._definitions import (
    ACTION_KINDS,
    RESERVED_TOPIC_PREFIX,
    RULE_RECORD_VERSION,
    Action,
    ActionKind,
    AppendTraitAction,
    EmitEventAction,
    HttpMethod,
    IncrementTraitAction,
    ProduceAction,
    Rule,
    RuleRecord,
    SetTraitAction,
    StopAction,
    TagAction,
    UnsetTraitAction,
    UntagAction,
    WebhookAction,
    When,
    rule_key,
)
from schemas.rules._delivery import WebhookDeadLetter, WebhookDelivery
from schemas.rules._results import (
    ActionOutcome,
    AddTags,
    AppendTrait,
    EmitEvent,
    IncrementTrait,
    PatchOp,
    PatchProfile,
    PlannedAction,
    ProduceMessage,
    ProfilePatch,
    RemoveTags,
    SetTrait,
    UnsetTrait,
    WebhookCall,
    WorkflowResult,
)
from schemas.rules._syntax import (
    MAX_MATCH_INPUT,
    MAX_PATTERN_LENGTH,
    PATH_ROOTS,
    FieldPath,
    JsonScalar,
    JsonTemplate,
    Placeholder,
    TemplatePart,
    TemplateStr,
    compile_pattern,
    parse_date_text,
    parse_path,
    parse_template,
    secret_names,
)

__all__ = [
    "ACTION_KINDS",
    "COMPARE_OPS",
    "MAX_MATCH_INPUT",
    "MAX_PATTERN_LENGTH",
    "OPERATORS",
    "PATH_ROOTS",
    "RESERVED_TOPIC_PREFIX",
    "RULE_RECORD_VERSION",
    "Action",
    "ActionKind",
    "ActionOutcome",
    "AddTags",
    "AllOf",
    "AnyOf",
    "AppendTrait",
    "AppendTraitAction",
    "Compare",
    "CompareOp",
    "Condition",
    "ConditionNode",
    "Const",
    "Contains",
    "DateOf",
    "EmitEvent",
    "EmitEventAction",
    "Exists",
    "FieldPath",
    "HttpMethod",
    "In",
    "IncrementTrait",
    "IncrementTraitAction",
    "JsonScalar",
    "JsonTemplate",
    "Matches",
    "Not",
    "Operand",
    "PatchOp",
    "PatchProfile",
    "Placeholder",
    "PlannedAction",
    "ProduceAction",
    "ProduceMessage",
    "ProfilePatch",
    "RemoveTags",
    "Rule",
    "RuleRecord",
    "SetTrait",
    "SetTraitAction",
    "StopAction",
    "TagAction",
    "TemplatePart",
    "TemplateStr",
    "UnsetTrait",
    "UnsetTraitAction",
    "UntagAction",
    "Var",
    "WebhookAction",
    "WebhookCall",
    "WebhookDeadLetter",
    "WebhookDelivery",
    "When",
    "WorkflowResult",
    "compile_pattern",
    "dump_condition",
    "parse_condition",
    "parse_date_text",
    "parse_path",
    "parse_template",
    "rule_key",
    "secret_names",
]
