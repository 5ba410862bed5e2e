"""Planning one action of a matched rule: render its templates and say what should happen.

Each ``plan_*`` is pure and returns a planned action, or raises :class:`RenderError` naming
the field that could not be rendered. Every planned action carries the same idempotency key
on every replay and every delivery attempt: :func:`idempotency_key` of rule id, action index
and event id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import JsonValue, ValidationError

from processors.workflow.conditions import as_number
from processors.workflow.errors import RenderError
from processors.workflow.scope import MISSING, Scope
from processors.workflow.templates import render_json, render_text, render_url, render_value
from schemas import RawEvent, describe_validation_error
from schemas.rules import (
    Action,
    AddTags,
    AppendTrait,
    AppendTraitAction,
    EmitEvent,
    EmitEventAction,
    IncrementTrait,
    IncrementTraitAction,
    PatchOp,
    PatchProfile,
    PlannedAction,
    ProduceAction,
    ProduceMessage,
    ProfilePatch,
    RemoveTags,
    SetTrait,
    SetTraitAction,
    StopAction,
    TagAction,
    UnsetTrait,
    UnsetTraitAction,
    UntagAction,
    WebhookAction,
    WebhookCall,
    parse_path,
    secret_names,
)

__all__ = ["WORKFLOW_OPTION", "PlanContext", "emit_depth", "idempotency_key", "plan_action"]

WORKFLOW_OPTION = "workflow"  # emitted events carry options.workflow = {rule_id, ..., depth}


def idempotency_key(rule_id: str, action_index: int, event_id: str) -> str:
    """32 hex characters, the same for the same (rule, action, event), whatever the replay."""
    material = json.dumps(["trackflow.workflow.v1", rule_id, action_index, event_id])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def emit_depth(event: RawEvent) -> int:
    """How many emit_event actions led to this event (0 for an event from outside)."""
    info = event.options.get(WORKFLOW_OPTION)
    depth = info.get("depth") if isinstance(info, dict) else None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0


class PlanContext:
    """Everything an action plan needs besides the action itself."""

    __slots__ = ("event", "index", "key", "max_emit_depth", "rule_id", "scope")

    def __init__(
        self, rule_id: str, index: int, event: RawEvent, scope: Scope, max_emit_depth: int
    ) -> None:
        self.rule_id = rule_id
        self.index = index
        self.event = event
        self.scope = scope
        self.max_emit_depth = max_emit_depth
        self.key = idempotency_key(rule_id, index, event.id)

    def ids(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "action_index": self.index, "idempotency_key": self.key}


def plan_action(action: Action, ctx: PlanContext) -> PlannedAction:
    """The planned effect of one (non-stop) action; RenderError when it cannot be rendered."""
    match action:
        case TagAction(tags=tags):
            return _patch(ctx, AddTags(tags=_tags(tags, ctx.scope)))
        case UntagAction(tags=tags):
            return _patch(ctx, RemoveTags(tags=_tags(tags, ctx.scope)))
        case SetTraitAction():
            return _patch(ctx, SetTrait(trait=action.trait, value=_value(action, ctx.scope)))
        case UnsetTraitAction(trait=trait):
            return _patch(ctx, UnsetTrait(trait=trait))
        case IncrementTraitAction(trait=trait, by=by):
            return _patch(ctx, IncrementTrait(trait=trait, by=_amount(by, ctx.scope)))
        case AppendTraitAction():
            value = _value(action, ctx.scope)
            op = AppendTrait(
                trait=action.trait, value=value, unique=action.unique, max_items=action.max_items
            )
            return _patch(ctx, op)
        case EmitEventAction():
            return _emit(action, ctx)
        case WebhookAction():
            return _webhook(action, ctx)
        case ProduceAction():
            return _produce(action, ctx)
        case StopAction():
            raise RenderError("'stop' plans nothing; the evaluator handles it")
    raise RenderError(f"unknown action {action!r}")  # pragma: no cover


def _patch(ctx: PlanContext, op: PatchOp) -> PatchProfile:
    return PatchProfile(**ctx.ids(), profile_id=ctx.event.profile_id, patch=ProfilePatch(ops=(op,)))


def _tags(templates: tuple[str, ...], scope: Scope) -> tuple[str, ...]:
    tags = tuple(render_text(t, scope).strip() for t in templates)
    for tag in tags:
        if not tag or len(tag) > 200 or "\x00" in tag:
            raise RenderError(f"tag {tag!r} is not 1-200 characters without NUL", "tags")
    return tags


def _value(action: SetTraitAction | AppendTraitAction, scope: Scope) -> JsonValue:
    if action.value_from is None:
        return render_json(action.value, scope)
    value = scope.resolve(parse_path(action.value_from))
    if value is MISSING:
        raise RenderError(f"value_from {action.value_from} is missing", action.value_from)
    return value  # type: ignore[return-value]  # the scope holds JSON only


def _amount(by: int | float | str, scope: Scope) -> int | float:
    value = render_value(by, scope) if isinstance(by, str) else by
    number = as_number(value)
    if number is None:
        raise RenderError(f"increment 'by' rendered to {value!r}, which is not a number", "by")
    return number


def _emit(action: EmitEventAction, ctx: PlanContext) -> EmitEvent:
    depth = emit_depth(ctx.event)
    if depth >= ctx.max_emit_depth:
        raise RenderError(
            f"event {ctx.event.id} was itself emitted by a chain of {depth} rules "
            f"(at most {ctx.max_emit_depth}); not emitting again, to stop a loop"
        )
    event_type = render_text(action.type, ctx.scope).strip()
    properties = render_json(action.properties, ctx.scope)
    origin = {"rule_id": ctx.rule_id, "action_index": ctx.index, "caused_by": ctx.event.id}
    options: dict[str, object] = {WORKFLOW_OPTION: {**origin, "depth": depth + 1}}
    if ctx.event.profile_less:  # what a profile-less event causes has no profile either
        options["profile_less"] = True
    try:
        event = RawEvent(
            id=f"wf-{ctx.key}",
            type=event_type,
            source_id=ctx.event.source_id,
            profile_id=ctx.event.profile_id,
            session_id=ctx.event.session_id,
            received_at=ctx.scope.now,
            properties=properties if isinstance(properties, dict) else {},
            options=options,
            protocol="kafka",
        )
    except ValidationError as exc:
        raise RenderError(
            f"the emitted event is invalid: {describe_validation_error(exc)}"
        ) from None
    return EmitEvent(**ctx.ids(), event=event)


def _webhook(action: WebhookAction, ctx: PlanContext) -> WebhookCall:
    headers: dict[str, str] = {}
    secret_headers: dict[str, str] = {}
    for name, value in action.headers.items():
        if secret_names(value):
            secret_headers[name] = value  # the rule's literal text; the deliverer resolves it
            continue
        headers[name] = _header_value(name, render_text(value, ctx.scope))
    body = render_json(action.body, ctx.scope) if action.body is not None else None
    return WebhookCall(
        **ctx.ids(),
        event_id=ctx.event.id,
        method=action.method,
        url=render_url(action.url, ctx.scope),
        headers=headers,
        secret_headers=secret_headers,
        body=body,
        timeout_seconds=action.timeout_seconds,
        max_attempts=action.max_attempts,
    )


def _header_value(name: str, rendered: str) -> str:
    if len(rendered) > 1000 or any(c in rendered for c in "\r\n\x00"):
        raise RenderError(
            f"header {name} rendered to a value with a line break or over 1000 characters",
            f"headers.{name}",
        )
    if "${secret:" in rendered:  # event data must never name a secret for the deliverer
        raise RenderError(f"header {name} rendered to a secret reference", f"headers.{name}")
    return rendered


def _produce(action: ProduceAction, ctx: PlanContext) -> ProduceMessage:
    key = render_text(action.key, ctx.scope)
    value = render_json(action.value, ctx.scope)
    return ProduceMessage(**ctx.ids(), topic=action.topic, key=key, value=value)
