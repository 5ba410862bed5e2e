"""What evaluation plans: profile patches, emitted events, webhook calls, productions, and
the outcome of every action."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
)

from schemas.envelope import RawEvent
from schemas.rules._definitions import ActionKind, HttpMethod

__all__ = [
    "ActionOutcome",
    "AddTags",
    "AppendTrait",
    "EmitEvent",
    "IncrementTrait",
    "PatchOp",
    "PatchProfile",
    "PlannedAction",
    "ProduceMessage",
    "ProfilePatch",
    "RemoveTags",
    "SetTrait",
    "UnsetTrait",
    "WebhookCall",
    "WorkflowResult",
]

# -- what evaluation plans -------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AddTags(_Message):
    op: Literal["add_tags"] = "add_tags"
    tags: tuple[str, ...]


class RemoveTags(_Message):
    op: Literal["remove_tags"] = "remove_tags"
    tags: tuple[str, ...]


class SetTrait(_Message):
    op: Literal["set_trait"] = "set_trait"
    trait: str
    value: JsonValue


class UnsetTrait(_Message):
    op: Literal["unset_trait"] = "unset_trait"
    trait: str


class IncrementTrait(_Message):
    """A trait that is missing or not a number counts as 0."""

    op: Literal["increment_trait"] = "increment_trait"
    trait: str
    by: int | float


class AppendTrait(_Message):
    """A trait that is missing or not a list counts as ``[]``; the newest ``max_items`` stay."""

    op: Literal["append_trait"] = "append_trait"
    trait: str
    value: JsonValue
    unique: bool = False
    max_items: int = 100


PatchOp = Annotated[
    AddTags | RemoveTags | SetTrait | UnsetTrait | IncrementTrait | AppendTrait,
    Field(discriminator="op"),
]


class ProfilePatch(_Message):
    """Changes to a profile's ``tags`` and ``traits``, applied in order."""

    ops: tuple[PatchOp, ...] = ()


class _Planned(_Message):
    rule_id: str
    action_index: int
    idempotency_key: str


class PatchProfile(_Planned):
    kind: Literal["patch_profile"] = "patch_profile"
    profile_id: str
    patch: ProfilePatch


class EmitEvent(_Planned):
    """``event`` goes to ``trackflow.events.raw.v1``; its id is derived, so replays dedupe."""

    kind: Literal["emit_event"] = "emit_event"
    event: RawEvent


class WebhookCall(_Planned):
    """One delivery. ``headers`` are final; ``secret_headers`` hold the rule's literal values
    with ``${secret:NAME}`` for the deliverer to resolve (and never to log or store)."""

    kind: Literal["webhook"] = "webhook"
    event_id: str
    method: HttpMethod
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None
    timeout_seconds: float
    max_attempts: int


class ProduceMessage(_Planned):
    kind: Literal["produce"] = "produce"
    topic: str
    key: str
    value: JsonValue


PlannedAction = Annotated[
    PatchProfile | EmitEvent | WebhookCall | ProduceMessage, Field(discriminator="kind")
]


class ActionOutcome(_Message):
    """What happened to one action of a matched rule (for storage and metrics)."""

    rule_id: str
    action_index: int
    action: ActionKind
    status: Literal["planned", "failed", "stopped"]
    error: str | None = None
    idempotency_key: str


class WorkflowResult(_Message):
    event_id: str
    matched_rules: tuple[str, ...] = ()  # in evaluation order
    actions: tuple[PlannedAction, ...] = ()  # in order; failed actions plan nothing
    outcomes: tuple[ActionOutcome, ...] = ()  # one per action of every matched rule
    stopped_by: str | None = None

    @property
    def profile_patch(self) -> ProfilePatch:
        """Every profile change, in order, as one patch."""
        ops = [op for a in self.actions if isinstance(a, PatchProfile) for op in a.patch.ops]
        return ProfilePatch(ops=tuple(ops))

    @property
    def emitted_events(self) -> tuple[RawEvent, ...]:
        return tuple(a.event for a in self.actions if isinstance(a, EmitEvent))

    @property
    def webhook_calls(self) -> tuple[WebhookCall, ...]:
        return tuple(a for a in self.actions if isinstance(a, WebhookCall))

    @property
    def productions(self) -> tuple[ProduceMessage, ...]:
        return tuple(a for a in self.actions if isinstance(a, ProduceMessage))
