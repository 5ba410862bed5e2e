"""Snowplow's tracker protocol: what its trackers send to ``tp2`` and ``/i``.

Each event is a flat map of short parameter names to strings (``e`` the event kind, ``aid``
the app id, ``eid`` the event id, ``duid``/``nuid``/``uid`` the user ids, ``cx``/``co`` the
contexts, ``ue_px``/``ue_pr`` the self-describing event, ...). ``POST
/com.snowplowanalytics.snowplow/tp2`` carries several in ``payload_data``; ``GET /i`` one,
as its query string. Only the parameters trackflow reads are modelled; every parameter is
kept with the event.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PAYLOAD_DATA_SCHEMA", "SnowplowEvent", "SnowplowPayload"]

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
_P = Field(default=None, max_length=1_000_000)


class SnowplowEvent(BaseModel):
    """One event's parameters (all strings on the wire)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    e: str = Field(description="event kind: pv, pp, se, ue, tr, ti")
    aid: str = Field(min_length=1, max_length=128, description="app id: the trackflow source")
    eid: str | None = Field(default=None, min_length=1, max_length=128)
    tv: str | None = None
    p: str | None = None
    duid: str | None = None
    nuid: str | None = None
    uid: str | None = None
    sid: str | None = None
    url: str | None = None
    page: str | None = None
    refr: str | None = None
    se_ca: str | None = None
    se_ac: str | None = None
    se_la: str | None = None
    se_pr: str | None = None
    se_va: str | None = None
    ue_px: str | None = _P
    ue_pr: str | None = _P
    cx: str | None = _P
    co: str | None = _P
    dtm: str | None = None
    stm: str | None = None


class SnowplowPayload(BaseModel):
    """The body of ``POST /com.snowplowanalytics.snowplow/tp2``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_: str = Field(default=PAYLOAD_DATA_SCHEMA, alias="schema")
    data: list[SnowplowEvent] = Field(min_length=1)
