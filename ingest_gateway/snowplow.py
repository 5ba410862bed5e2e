"""Snowplow's tracker protocol mapped onto raw events. Pure; no I/O.

How one Snowplow event (a map of parameters) becomes a :class:`~schemas.RawEvent`:

* source: ``aid`` (the tracker's app id) is the trackflow event source id;
* id: ``eid``; a new id when absent;
* profile id: ``duid`` (the domain user id the JavaScript tracker keeps in its cookie),
  else ``nuid`` (the network user id), else a stable id derived from ``uid`` (the same as
  a Segment ``userId`` gets), else one fresh id shared by the request's anonymous events;
  ``uid`` is also ``context.user_id`` for the identify stage; session id: ``sid``;
* type: ``page_view`` (pv), ``page_ping`` (pp), the action ``se_ac`` for a structured event
  (se), the schema's name for a self-describing event (ue: ``iglu:com.acme/checkout/
  jsonschema/1-0-0`` is ``checkout``), ``transaction`` (tr), ``transaction_item`` (ti),
  otherwise ``e`` itself;
* properties: the page (pv, pp), ``category``/``action``/``label``/``property``/``value``
  (se), the self-describing event's data (ue), the ``tr_*``/``ti_*`` fields;
* context: ``page`` (url, title, referrer), ``user_id``, ``ip``, ``locale``, ``timezone``,
  ``screen``, and ``snowplow``: every parameter as sent, with ``cx``/``co`` decoded into
  ``contexts`` and ``ue_px``/``ue_pr`` into ``event`` (schema and data).

``cx`` and ``ue_px`` are base64 (URL-safe or standard alphabet, padding optional).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from ingest_gateway.body import has_nul
from ingest_gateway.segment import profile_id_for_user
from schemas import RawEvent, RequestInfo
from schemas.codec import MAX_DEPTH, too_deep

__all__ = ["decode_base64_json", "event_name", "snowplow_event"]

_KINDS = {"pv": "page_view", "pp": "page_ping", "tr": "transaction", "ti": "transaction_item"}
_ENCODED = ("cx", "co", "ue_px", "ue_pr")


def snowplow_event(
    params: dict[str, Any],
    *,
    anonymous_profile_id: Callable[[], str],
    request: RequestInfo,
    new_id: Callable[[], str],
    now: datetime,
) -> RawEvent:
    """One Snowplow event; ``ValueError`` names the parameter that is missing or invalid."""
    kind = _required(params, "e", "the event kind (pv, pp, se, ue, tr, ti, ...)")
    source_id = _required(params, "aid", "the app id, which names the trackflow event source")
    kept = {k: v for k, v in params.items() if k not in _ENCODED}
    contexts = _contexts(params)
    if contexts is not None:
        kept["contexts"] = contexts
    properties, type_ = _properties_and_type(kind, params, kept)
    context = _context(params)
    context["snowplow"] = kept
    return RawEvent(
        id=_text(params, "eid") or new_id(),
        type=type_,
        source_id=source_id,
        profile_id=_profile_id(params, anonymous_profile_id),
        session_id=_text(params, "sid"),
        received_at=now,
        properties=properties,
        context=context,
        request=request,
        protocol="snowplow",
    )


def decode_base64_json(value: str, name: str) -> Any:
    """JSON from base64: URL-safe or standard alphabet, padding optional."""
    text = value.strip().replace(" ", "+").translate(str.maketrans("-_", "+/"))
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        return _checked(raw, orjson.loads(raw), name)
    except (binascii.Error, orjson.JSONDecodeError) as exc:
        raise ValueError(f"{name}: not base64-encoded JSON ({exc})") from None


def _checked(raw: bytes, value: Any, name: str) -> Any:
    """What ``parse_json`` checks of a body, for JSON that arrives inside a parameter."""
    if too_deep(raw, value):
        raise ValueError(f"{name}: the JSON nests deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in raw and has_nul(value):
        raise ValueError(f"{name}: a string contains a NUL character, which cannot be stored")
    return value


def event_name(schema: str) -> str:
    """``iglu:com.acme/checkout/jsonschema/1-0-0`` -> ``checkout``."""
    parts = schema.removeprefix("iglu:").split("/")
    if len(parts) != 4 or not parts[1]:
        raise ValueError(f"not an Iglu schema URI (iglu:vendor/name/format/version): {schema!r}")
    return parts[1]


def _properties_and_type(
    kind: str, params: dict[str, Any], kept: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    if kind in ("pv", "pp"):
        page = _page(params)
        pings = {"min_x": "pp_mix", "max_x": "pp_max", "min_y": "pp_miy", "max_y": "pp_may"}
        scroll = {k: params[p] for k, p in pings.items() if p in params} if kind == "pp" else {}
        return {**page, **scroll}, _KINDS[kind]
    if kind == "se":
        action = _required(params, "se_ac", "the action of a structured event")
        fields = {"category": "se_ca", "action": "se_ac", "label": "se_la", "property": "se_pr"}
        properties: dict[str, Any] = {k: params[p] for k, p in fields.items() if p in params}
        if "se_va" in params:
            properties["value"] = _number(params["se_va"])
        return properties, action
    if kind == "ue":
        schema, data = _self_describing(params)
        kept["event"] = {"schema": schema, "data": data}
        return (data if isinstance(data, dict) else {"data": data}), event_name(schema)
    if kind in ("tr", "ti"):
        prefix = f"{kind}_"
        return {k[3:]: v for k, v in params.items() if k.startswith(prefix)}, _KINDS[kind]
    return {}, kind


def _self_describing(params: dict[str, Any]) -> tuple[str, Any]:
    if (encoded := _text(params, "ue_px")) is not None:
        envelope, name = decode_base64_json(encoded, "ue_px"), "ue_px"
    elif (plain := _plain_json(params, "ue_pr")) is not None:
        envelope, name = plain, "ue_pr"
    else:
        raise ValueError("ue_px or ue_pr: required for a self-describing event (e=ue)")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("schema"), str):
        raise ValueError(f"{name}: expected {{schema, data: {{schema, data}}}}")
    return inner["schema"], inner.get("data")


def _contexts(params: dict[str, Any]) -> list[Any] | None:
    if (encoded := _text(params, "cx")) is not None:
        envelope, name = decode_base64_json(encoded, "cx"), "cx"
    elif (plain := _plain_json(params, "co")) is not None:
        envelope, name = plain, "co"
    else:
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected {{schema, data: [...]}} (the contexts envelope)")
    return data


def _context(params: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    page = _page(params)
    if page:
        context["page"] = page
    for key, param in (("user_id", "uid"), ("ip", "ip"), ("locale", "lang"), ("timezone", "tz")):
        if (value := _text(params, param)) is not None:
            context[key] = value
    resolution = _text(params, "res")
    if resolution and "x" in resolution:
        width, _, height = resolution.partition("x")
        if width.isdigit() and height.isdigit():
            context["screen"] = {"width": int(width), "height": int(height)}
    return context


def _page(params: dict[str, Any]) -> dict[str, Any]:
    fields = {"url": "url", "title": "page", "referrer": "refr"}
    return {k: params[p] for k, p in fields.items() if _text(params, p) is not None}


def _profile_id(params: dict[str, Any], anonymous: Callable[[], str]) -> str:
    for name in ("duid", "nuid"):
        if (value := _text(params, name)) is not None:
            if len(value) > 128:
                raise ValueError(f"{name}: at most 128 characters (got {len(value)})")
            return value
    user_id = _text(params, "uid")
    return profile_id_for_user(user_id) if user_id is not None else anonymous()


def _required(params: dict[str, Any], name: str, what: str) -> str:
    value = _text(params, name)
    if value is None:
        raise ValueError(f"{name}: required ({what})")
    return value


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value else None


def _plain_json(params: dict[str, Any], name: str) -> Any:
    """``co``/``ue_pr``: a JSON string, or (in a tp2 body) the object itself."""
    value = params.get(name)
    if isinstance(value, dict | list):
        return value
    text = _text(params, name)
    return None if text is None else _json(text, name)


def _json(value: str, name: str) -> Any:
    try:
        return _checked(value.encode(), orjson.loads(value), name)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{name}: not JSON ({exc})") from None


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
