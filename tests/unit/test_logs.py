"""Structured logs: one JSON object per line, with the event's context as fields."""

from __future__ import annotations

import io
import logging

import orjson

from trackflow.logs import JsonFormatter, logging_config
from trackflow.settings import Settings


def test_json_line_carries_event_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("trackflow.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    context = {"event_id": "e-1", "stage": "store", "topic": "t", "partition": 2, "offset": 7}
    logger.error("failed: %s", "reason", extra=context)
    entry = orjson.loads(stream.getvalue())
    assert entry["message"] == "failed: reason" and entry["level"] == "error"
    assert {k: entry[k] for k in context} == context


def test_config_picks_the_formatter_and_never_mentions_the_database_url() -> None:
    password = "pw-9f3a7c"
    settings = Settings(log_format="json", database_url=f"postgresql://u:{password}@h/db")  # type: ignore[arg-type]
    config = logging_config(settings)
    assert config["formatters"]["default"]["()"] is JsonFormatter
    assert password not in repr(config)
    assert password not in repr(settings)
    text = logging_config(Settings(log_format="text"))
    assert "format" in text["formatters"]["default"]
