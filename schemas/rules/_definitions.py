"""What people write: rules, their filters and actions. Unknown fields are errors."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from schemas.rules._conditions import Condition
from schemas.rules._syntax import (
    SECRET_REF,
    SECRET_START,
    FieldPath,
    JsonTemplate,
    TemplateStr,
    _check_template,
    _show,
    parse_template,
    secret_names,
)

__all__ = [
    "ACTION_KINDS",
    "RESERVED_TOPIC_PREFIX",
    "RULE_RECORD_VERSION",
    "Action",
    "ActionKind",
    "AppendTraitAction",
    "EmitEventAction",
    "HttpMethod",
    "IncrementTraitAction",
    "ProduceAction",
    "Rule",
    "RuleRecord",
    "SetTraitAction",
    "StopAction",
    "TagAction",
    "UnsetTraitAction",
    "UntagAction",
    "WebhookAction",
    "When",
    "rule_key",
]

RULE_RECORD_VERSION = 1

# -- names -----------------------------------------------------------------------------------

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRAIT = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")
RESERVED_TOPIC_PREFIX = "trackflow."


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{_show(value)} is not an id (1-128 letters, digits, '.', '_', ':', '-')")
    return value


def _check_trait(value: str) -> str:
    if not _TRAIT.match(value):
        raise ValueError(
            f"{_show(value)} is not a trait path (1-8 names of letters, digits, '_', '-' "
            "separated by '.', like 'loyalty.points')"
        )
    return value


def _check_topic(value: str) -> str:
    if not _TOPIC.match(value):
        raise ValueError(
            f"{_show(value)} is not a safe topic name (1-249 letters, digits, '.', '_', '-', "
            "starting with a letter or digit)"
        )
    if value.startswith(RESERVED_TOPIC_PREFIX):
        raise ValueError(
            f"{_show(value)} is one of the pipeline's own topics ('{RESERVED_TOPIC_PREFIX}*'); "
            "use emit_event to send an event back into the pipeline"
        )
    return value


Id = Annotated[str, AfterValidator(_check_id)]
TraitPath = Annotated[str, AfterValidator(_check_trait)]
TopicName = Annotated[str, AfterValidator(_check_topic)]
EventType = Annotated[str, Field(min_length=1, max_length=128)]

# -- actions ---------------------------------------------------------------------------------


class _Definition(BaseModel):
    """What people write: unknown fields are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


Tags = Annotated[
    tuple[Annotated[TemplateStr, Field(min_length=1, max_length=200)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1, max_length=50),
]


class TagAction(_Definition):
    """Add tags to the profile; a tag may be a template (``plan-{{ event.properties.plan }}``)."""

    action: Literal["tag"] = "tag"
    tags: Tags


class UntagAction(_Definition):
    action: Literal["untag"] = "untag"
    tags: Tags


class _ValueAction(_Definition):
    """``value`` (JSON with templates in its strings) or ``value_from`` (a field path)."""

    trait: TraitPath
    value: JsonTemplate = None
    value_from: FieldPath | None = None

    @model_validator(mode="after")
    def _exactly_one_value(self) -> _ValueAction:
        given = "value" in self.model_fields_set
        if (self.value_from is None and not given) or (
            self.value_from is not None and self.value is not None
        ):
            raise ValueError("give exactly one of value (JSON, templates allowed) or value_from")
        return self


class SetTraitAction(_ValueAction):
    action: Literal["set_trait"] = "set_trait"


class AppendTraitAction(_ValueAction):
    """Append to a list trait, keeping the newest ``max_items``."""

    action: Literal["append_trait"] = "append_trait"
    unique: bool = False
    max_items: int = Field(100, ge=1, le=10_000)


class UnsetTraitAction(_Definition):
    action: Literal["unset_trait"] = "unset_trait"
    trait: TraitPath


def _amount(value: object) -> object:
    if isinstance(value, str):
        return _check_template(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            "by is a finite number or a template that renders to one, like "
            f"'{{{{ event.properties.quantity }}}}', got {_show(value)}"
        )
    return value


class IncrementTraitAction(_Definition):
    """Add ``by`` (a number, or a template that renders to one) to a numeric trait."""

    action: Literal["increment_trait"] = "increment_trait"
    trait: TraitPath
    by: Annotated[StrictInt | StrictFloat | str, BeforeValidator(_amount)] = 1


class EmitEventAction(_Definition):
    """A new event of ``type`` for the same profile and session; it re-enters the pipeline."""

    action: Literal["emit_event"] = "emit_event"
    type: Annotated[TemplateStr, Field(min_length=1, max_length=512)]
    properties: JsonTemplate = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _an_object(cls, value: JsonValue) -> JsonValue:
        if not isinstance(value, dict):
            raise ValueError(f"properties is an object (a mapping), got {_show(value)}")
        return value


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"}
)
ADAPTER_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)


def _header_problem(name: str, value: str) -> str | None:
    if not _HEADER_NAME.match(name):
        return f"{_show(name)} is not a header name (1-64 token characters)"
    if name.lower() in ADAPTER_HEADERS:
        return f"{name} is set by the webhook deliverer; leave it out"
    if len(value) > 1000 or "\r" in value or "\n" in value:
        return f"{name}: a header value is at most 1000 characters, without line breaks"
    secrets = secret_names(value)
    if SECRET_REF.sub("", value).count(SECRET_START):
        return f"{name}: malformed secret reference; write ${{secret:NAME}} (letters, digits, '_')"
    if secrets and "{{" in value:
        return f"{name}: a header with a secret reference cannot also use {{{{ placeholders }}}}"
    if name.lower() in SENSITIVE_HEADERS and not secrets:
        return (
            f"{name}: a literal credential is not allowed in a rule file; reference a secret, "
            'like "Bearer ${secret:CRM_TOKEN}" (the worker resolves it from its settings)'
        )
    try:
        parse_template(value)
    except ValueError as exc:
        return f"{name}: {exc}"
    return None


def _url_problem(url: str) -> str | None:
    """Scheme and host are literal (templates only in the path and query), http(s), no
    credentials. Where it may connect is decided at delivery (``check_webhook_target``)."""
    if len(url) > 2048:
        return "a webhook URL is at most 2048 characters"
    try:
        _check_template(url)
    except ValueError as exc:
        return str(exc)
    fixed = url.split("{{", 1)[0]
    try:
        parts = urlsplit(fixed)
        hostname = parts.hostname
    except ValueError as exc:
        return f"{_show(url)} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{_show(parts.scheme)} is not a webhook scheme (http, https)"
    after_host = fixed[len(parts.scheme) + 3 + len(parts.netloc) :]
    if "{{" in url and not after_host.startswith(("/", "?")):
        return "placeholders are allowed only after the host (in the path and query)"
    if not hostname:
        return f"{_show(url)} has no host; write it like https://hooks.example.com/path"
    if "@" in parts.netloc:
        return "credentials in the URL are not allowed; use a header with ${secret:NAME}"
    return None


class WebhookAction(_Definition):
    """An HTTP call, delivered by the worker with retries under one idempotency key."""

    action: Literal["webhook"] = "webhook"
    method: HttpMethod = "POST"
    url: str
    headers: dict[str, str] = Field(default_factory=dict, max_length=30)
    body: JsonTemplate = None
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    max_attempts: int = Field(5, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _safe_url(cls, value: str) -> str:
        problem = _url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("headers")
    @classmethod
    def _safe_headers(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [p for n, v in value.items() if (p := _header_problem(n, v))]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class ProduceAction(_Definition):
    """A message on another Kafka topic (not one of the pipeline's own)."""

    action: Literal["produce"] = "produce"
    topic: TopicName
    key: Annotated[TemplateStr, Field(max_length=512)] = "{{ event.profile_id }}"
    value: JsonTemplate = "{{ event }}"


class StopAction(_Definition):
    """No rule after this one is evaluated for the event. Must be the rule's last action."""

    action: Literal["stop"] = "stop"


Action = Annotated[
    TagAction
    | UntagAction
    | SetTraitAction
    | UnsetTraitAction
    | IncrementTraitAction
    | AppendTraitAction
    | EmitEventAction
    | WebhookAction
    | ProduceAction
    | StopAction,
    Field(discriminator="action"),
]
ActionKind = Literal[
    "tag",
    "untag",
    "set_trait",
    "unset_trait",
    "increment_trait",
    "append_trait",
    "emit_event",
    "webhook",
    "produce",
    "stop",
]
ACTION_KINDS: tuple[ActionKind, ...] = get_args(ActionKind)

# -- rules -----------------------------------------------------------------------------------


class When(_Definition):
    """All given filters must hold; an empty list means any."""

    event_types: Annotated[tuple[EventType, ...], BeforeValidator(_one_or_many)] = Field(
        default=(), max_length=100
    )
    sources: Annotated[tuple[Id, ...], BeforeValidator(_one_or_many)] = Field(
        default=(), max_length=100
    )
    condition: Condition | None = None


class Rule(_Definition):
    """Rules run in priority order, higher first; ties by id."""

    id: Id
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    when: When
    then: tuple[Action, ...] = Field(min_length=1, max_length=50)

    @field_validator("then")
    @classmethod
    def _stop_is_last(cls, value: tuple[Action, ...]) -> tuple[Action, ...]:
        stops = [i for i, a in enumerate(value) if isinstance(a, StopAction)]
        if stops and stops != [len(value) - 1]:
            raise ValueError(f"'stop' may appear once, as the last action (found at {stops})")
        return value


class RuleRecord(BaseModel):
    """The config-topic value under key ``rule:<id>``. A rule is disabled, not deleted."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    kind: Literal["rule"] = "rule"
    rule: Rule
    updated_at: datetime


def rule_key(rule_id: str) -> bytes:
    return f"rule:{rule_id}".encode()
