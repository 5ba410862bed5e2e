"""JSON Schema files for the topic messages, so services in any language can produce them.

``trackflow schemas export`` writes them to ``schemas/json/``; a test fails when the
checked-in files differ from the models.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from schemas.config import ConfigMessage
from schemas.enrichment import EnrichedEvent
from schemas.envelope import FailedEvent, RawEvent

__all__ = ["SCHEMAS", "export_schemas", "render_schema"]

SCHEMAS: dict[str, type[BaseModel]] = {
    "trackflow.events.raw.v1.json": RawEvent,
    "trackflow.events.enriched.v1.json": EnrichedEvent,
    "trackflow.events.failed.v1.json": FailedEvent,
    "trackflow.config.v1.json": ConfigMessage,
}


def render_schema(model: type[BaseModel], name: str) -> bytes:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": name,
        **model.model_json_schema(mode="validation"),
    }
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = folder / name
        path.write_bytes(render_schema(model, name))
        written.append(path)
    return written
