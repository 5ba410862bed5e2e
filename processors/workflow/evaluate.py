"""The workflow stage: which rules match an event, and what their actions plan. Pure.

Rules run enabled-only, by priority (higher first; ties by id). A rule matches when the
event's type and source pass its filters and its condition holds. Its actions are planned in
order; an action that cannot be rendered records a failed outcome and the rest go on. Each
profile change is applied to the evaluation's view of the profile, so later rules see it.
``stop`` ends the evaluation after the rule that holds it.

``now`` (for relative dates and emitted events' ``received_at``) defaults to the event's
``received_at``, so a replay decides exactly as the first run did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from processors.workflow.actions import PlanContext, plan_action
from processors.workflow.conditions import matches
from processors.workflow.errors import RenderError
from processors.workflow.patch import apply_patch
from processors.workflow.scope import Scope
from schemas import RawEvent
from schemas.rules import (
    ActionKind,
    ActionOutcome,
    PatchProfile,
    PlannedAction,
    Rule,
    StopAction,
    When,
    WorkflowResult,
)

__all__ = ["DEFAULT_MAX_EMIT_DEPTH", "evaluate", "order_rules"]

DEFAULT_MAX_EMIT_DEPTH = 3
OutcomeStatus = Literal["planned", "failed", "stopped"]


def order_rules(rules: Iterable[Rule]) -> list[Rule]:
    """The enabled rules in evaluation order: priority high to low, then id."""
    return sorted((r for r in rules if r.enabled), key=lambda r: (-r.priority, r.id))


def evaluate(
    rules: Sequence[Rule],
    event: RawEvent,
    profile: Mapping[str, Any] | None = None,
    session: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
    max_emit_depth: int = DEFAULT_MAX_EMIT_DEPTH,
) -> WorkflowResult:
    """``profile`` and ``session`` are JSON-like mappings (a profile has ``tags`` and
    ``traits``); ``None`` reads as empty."""
    run = _Run(event, max_emit_depth)
    scope: Scope | None = None
    for rule in order_rules(rules):
        if not _passes_filters(rule.when, event):
            continue
        scope = scope or Scope.of(event, profile, session, now or event.received_at)
        if not matches(rule.when.condition, scope):
            continue
        scope = run.apply(rule, scope)
        if run.stopped_by:
            break
    return run.result()


def _passes_filters(when: When, event: RawEvent) -> bool:
    return (not when.event_types or event.type in when.event_types) and (
        not when.sources or event.source_id in when.sources
    )


class _Run:
    """The growing result of one evaluation."""

    def __init__(self, event: RawEvent, max_emit_depth: int) -> None:
        self.event = event
        self.max_emit_depth = max_emit_depth
        self.matched: list[str] = []
        self.actions: list[PlannedAction] = []
        self.outcomes: list[ActionOutcome] = []
        self.stopped_by: str | None = None

    def apply(self, rule: Rule, scope: Scope) -> Scope:
        """Plan every action of a matched rule; the scope after its profile changes."""
        self.matched.append(rule.id)
        for index, action in enumerate(rule.then):
            ctx = PlanContext(rule.id, index, self.event, scope, self.max_emit_depth)
            if isinstance(action, StopAction):
                self.stopped_by = rule.id
                self._record(ctx, action.action, "stopped")
                break
            try:
                planned = plan_action(action, ctx)
            except RenderError as exc:
                self._record(ctx, action.action, "failed", exc.reason)
                continue
            self.actions.append(planned)
            self._record(ctx, action.action, "planned")
            if isinstance(planned, PatchProfile):
                scope = scope.with_profile(apply_patch(scope.profile, planned.patch))
        return scope

    def _record(
        self, ctx: PlanContext, kind: ActionKind, status: OutcomeStatus, error: str | None = None
    ) -> None:
        self.outcomes.append(
            ActionOutcome(
                rule_id=ctx.rule_id,
                action_index=ctx.index,
                action=kind,
                status=status,
                error=error,
                idempotency_key=ctx.key,
            )
        )

    def result(self) -> WorkflowResult:
        return WorkflowResult(
            event_id=self.event.id,
            matched_rules=tuple(self.matched),
            actions=tuple(self.actions),
            outcomes=tuple(self.outcomes),
            stopped_by=self.stopped_by,
        )
