"""The checked-in JSON Schema files match the models, and they accept what the models accept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest

from schemas import RawEvent, encode
from schemas.export import SCHEMAS, render_schema

FOLDER = Path(__file__).resolve().parents[2] / "schemas" / "json"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_checked_in_schema_is_current(name: str) -> None:
    path = FOLDER / name
    assert path.exists(), f"{path} missing; run `trackflow schemas export`"
    assert path.read_bytes() == render_schema(SCHEMAS[name], name), (
        f"{path} is stale; run `trackflow schemas export` and commit the result"
    )


def test_a_valid_raw_event_passes_the_schema_and_an_invalid_one_fails() -> None:
    schema = orjson.loads((FOLDER / "trackflow.events.raw.v1.json").read_bytes())
    event = RawEvent(
        id="e",
        type="t",
        source_id="s",
        profile_id="p",
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    jsonschema.validate(orjson.loads(encode(event)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "id": "e"}, schema)
