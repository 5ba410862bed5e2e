"""Builders for the workflow tests: events, rules and profiles as plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.workflow import load_rules
from schemas import RawEvent
from schemas.rules import Rule

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "rules"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(event_type: str = "purchase", **fields: Any) -> RawEvent:
    data: dict[str, Any] = {
        "id": "evt-1",
        "type": event_type,
        "source_id": "web",
        "profile_id": "prof-1",
        "session_id": "sess-1",
        "received_at": T0,
        **fields,
    }
    return RawEvent.model_validate(data)


def rule(rule_id: str = "r", then: list[dict[str, Any]] | None = None, **fields: Any) -> Rule:
    data: dict[str, Any] = {
        "id": rule_id,
        "name": f"rule {rule_id}",
        "when": {},
        "then": then if then is not None else [{"action": "tag", "tags": [rule_id]}],
        **fields,
    }
    return Rule.model_validate(data)


def example(name: str) -> list[Rule]:
    return load_rules((EXAMPLES / name).read_text(), "yaml")


def profile(tags: list[str] | None = None, **traits: Any) -> dict[str, Any]:
    return {"id": "prof-1", "tags": tags or [], "traits": traits}
