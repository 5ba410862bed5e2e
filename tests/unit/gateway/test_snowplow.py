"""Snowplow's tracker protocol over TestClient: tp2 and /i, base64, partial batches."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_gateway.publisher import InMemoryPublisher
from ingest_gateway.segment import profile_id_for_user
from ingest_gateway.snowplow import decode_base64_json, event_name, snowplow_event
from schemas import RequestInfo
from schemas.snowplow import PAYLOAD_DATA_SCHEMA
from tests.unit.gateway.conftest import published

TP2 = "/com.snowplowanalytics.snowplow/tp2"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"


def b64(value: Any, *, urlsafe: bool = True, padding: bool = False) -> str:
    raw = orjson.dumps(value)
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if padding else text.rstrip("=")


def tp2(client: TestClient, events: list[Any]):  # type: ignore[no-untyped-def]
    body = {"schema": PAYLOAD_DATA_SCHEMA, "data": events}
    return client.post(
        TP2, content=orjson.dumps(body), headers={"content-type": "application/json; charset=utf-8"}
    )


def test_page_view_structured_and_self_describing_events_map_onto_raw_events(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    contexts = {"schema": CONTEXTS, "data": [{"schema": "iglu:com.acme/user/jsonschema/1-0-0",
                                               "data": {"tier": "gold"}}]}  # fmt: skip
    checkout = {"schema": UNSTRUCT, "data": {"schema": "iglu:com.acme/checkout/jsonschema/1-0-0",
                                             "data": {"total": 9.5}}}  # fmt: skip
    common = {"aid": "web", "p": "web", "tv": "py-1.1.0", "duid": "d-1", "uid": "u-1"}
    events = [
        {**common, "e": "pv", "eid": "e-pv", "url": "https://x/a", "page": "A", "refr": "https://r/",
         "cx": b64(contexts), "sid": "s-1", "lang": "pl-PL", "res": "1920x1080"},
        {**common, "e": "se", "eid": "e-se", "se_ca": "shop", "se_ac": "add-to-basket",
         "se_la": "sku-1", "se_va": "2"},
        {**common, "e": "ue", "eid": "e-ue", "ue_px": b64(checkout, urlsafe=False, padding=True)},
        {**common, "e": "ue", "eid": "e-ue2", "ue_pr": orjson.dumps(checkout).decode(),
         "co": orjson.dumps(contexts).decode()},
    ]  # fmt: skip
    response = tp2(client, events)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": ["e-pv", "e-se", "e-ue", "e-ue2"], "rejected": []}
    pv, se, ue, ue2 = published(publisher)
    assert (pv.type, pv.source_id, pv.profile_id, pv.session_id, pv.protocol) == (
        "page_view",
        "web",
        "d-1",
        "s-1",
        "snowplow",
    )
    assert pv.properties == {"url": "https://x/a", "title": "A", "referrer": "https://r/"}
    assert pv.context["page"] == pv.properties
    assert pv.context["user_id"] == "u-1" and pv.context["locale"] == "pl-PL"
    assert pv.context["screen"] == {"width": 1920, "height": 1080}
    assert pv.context["snowplow"]["contexts"] == contexts["data"]
    assert pv.context["snowplow"]["tv"] == "py-1.1.0" and "cx" not in pv.context["snowplow"]
    assert se.type == "add-to-basket"
    assert se.properties == {
        "category": "shop",
        "action": "add-to-basket",
        "label": "sku-1",
        "value": 2.0,
    }
    assert ue.type == ue2.type == "checkout"
    assert ue.properties == ue2.properties == {"total": 9.5}
    assert ue.context["snowplow"]["event"]["schema"] == "iglu:com.acme/checkout/jsonschema/1-0-0"
    assert ue2.context["snowplow"]["contexts"] == contexts["data"]


def test_profile_id_from_duid_then_nuid_then_uid_then_one_fresh_id_per_request(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    events = [
        {"e": "pv", "aid": "web", "duid": "d", "nuid": "n", "uid": "u"},
        {"e": "pv", "aid": "web", "nuid": "n", "uid": "u"},
        {"e": "pv", "aid": "web", "uid": "u"},
        {"e": "pv", "aid": "web"},
        {"e": "pv", "aid": "web"},
    ]
    assert tp2(client, events).status_code == 200
    ids = [e.profile_id for e in published(publisher)]
    assert ids[:3] == ["d", "n", profile_id_for_user("u")]
    assert ids[3] == ids[4] and ids[3] not in ids[:3]


def test_a_batch_with_bad_events_accepts_the_good_and_lists_the_bad(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    events = [
        {"e": "pv", "aid": "web", "eid": "good"},
        {"e": "pv"},
        {"e": "pv", "aid": "nope"},
        {"e": "pv", "aid": "web", "cx": "%%%"},
        {"e": "ue", "aid": "web"},
        {"e": "se", "aid": "web"},
        {"aid": "web"},
        {"e": "pv", "aid": "off"},
        7,
    ]
    response = tp2(client, events)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["events"] == ["good"]
    rejected = {r["index"]: (r["status"], r["message"]) for r in answer["rejected"]}
    assert rejected[1][1].startswith("data.1.aid: required (the app id")
    assert rejected[2][0] == 401 and "'nope' is not a registered" in rejected[2][1]
    assert rejected[3][1].startswith("data.3.cx: not base64-encoded JSON")
    assert rejected[4][1].startswith("data.4.ue_px or ue_pr: required")
    assert rejected[5][1].startswith("data.5.se_ac: required")
    assert rejected[6][1].startswith("data.6.e: required")
    assert rejected[7][0] == 403 and "is disabled" in rejected[7][1]
    assert rejected[8][1] == "data.8: expected an object of parameters"
    assert [e.id for e in published(publisher)] == ["good"]


def test_all_bad_is_400_and_all_unknown_app_ids_is_401(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    bad = tp2(client, [{"e": "pv"}, {"aid": "web"}])
    assert bad.status_code == 400
    assert [d["index"] for d in bad.json()["error"]["details"]] == [0, 1]
    unknown = tp2(client, [{"e": "pv", "aid": "nope"}])
    assert unknown.status_code == 401
    assert "'nope' is not a registered event source" in unknown.json()["error"]["message"]
    empty = tp2(client, [])
    assert empty.status_code == 400 and "data: expected a non-empty list" in empty.text
    assert publisher.records == []


def test_get_i_takes_one_event_and_answers_a_pixel(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    contexts = {"schema": CONTEXTS, "data": [{"schema": "iglu:a/b/jsonschema/1-0-0", "data": {}}]}
    response = client.get(
        "/i",
        params={"e": "pv", "aid": "web", "eid": "g-1", "url": "https://x/", "cx": b64(contexts)},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    [event] = published(publisher)
    assert (event.id, event.type) == ("g-1", "page_view")
    assert event.context["snowplow"]["contexts"] == contexts["data"]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"aid": "web"}, 400, "e: required"),
        ({"e": "pv", "aid": "nope"}, 401, "aid: source.id 'nope'"),
        ({"e": "ue", "aid": "web", "ue_px": b64({"data": 1})}, 400, "ue_px: expected"),
        ({"e": "pv", "aid": "web", "url": "a\x00b"}, 400, "NUL"),
        ({"e": "pv", "aid": "web", "eid": "x" * 200}, 400, "id: String should have at most"),
    ],
)
def test_get_i_names_the_problem(
    client: TestClient,
    publisher: InMemoryPublisher,
    params: dict[str, str],
    status: int,
    needle: str,
) -> None:
    response = client.get("/i", params=params)
    assert response.status_code == status
    assert needle in response.json()["error"]["message"]
    assert publisher.records == []


def test_event_name_is_the_schema_name() -> None:
    assert event_name("iglu:com.acme/link_click/jsonschema/1-0-1") == "link_click"
    with pytest.raises(ValueError, match="not an Iglu schema URI"):
        event_name("com.acme")


_TEXT = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=20)


@given(value=st.dictionaries(_TEXT, _TEXT, max_size=4))
def test_base64_json_round_trips_in_either_alphabet_with_or_without_padding(
    value: dict[str, str],
) -> None:
    for urlsafe in (True, False):
        for padding in (True, False):
            assert decode_base64_json(b64(value, urlsafe=urlsafe, padding=padding), "cx") == value


def test_base64_json_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ValueError, match="cx: a string contains a NUL character"):
        decode_base64_json(b64({"a": "\x00"}), "cx")


_PARAMETERS = "e aid eid duid nuid uid sid url page refr res se_ac se_va ue_px ue_pr cx co tr_id"
_SCALAR = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
_JSON = st.recursive(
    _SCALAR | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@given(
    params=st.dictionaries(st.sampled_from(_PARAMETERS.split()), _JSON, max_size=6),
    kind=st.sampled_from(["pv", "pp", "se", "ue", "tr", "ti", "xx"]),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the answer is per request
def test_any_json_value_in_any_parameter_is_accepted_or_named(
    client: TestClient, params: dict[str, Any], kind: str
) -> None:
    """Trackers send numbers, objects and lists where strings are expected; never a 5xx."""
    response = tp2(client, [{"e": kind, "aid": "web", **params}])
    assert response.status_code < 500, (params, response.text)
    answer = response.json()
    if response.status_code == 200:
        assert len(answer["events"]) + len(answer["rejected"]) == 1
    else:
        assert answer["error"]["message"]


def test_contexts_as_a_number_or_an_object_are_named_or_taken() -> None:
    """``cx: 0`` is not base64 JSON; ``co`` given as the object itself is taken as is."""

    def event(params: dict[str, Any]):  # type: ignore[no-untyped-def]
        return snowplow_event(
            {"e": "pv", "aid": "web", **params},
            anonymous_profile_id=lambda: "anon",
            request=RequestInfo(),
            new_id=lambda: "id-1",
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )

    with pytest.raises(ValueError, match="cx: not base64-encoded JSON"):
        event({"cx": 0})
    contexts = {"schema": CONTEXTS, "data": [{"schema": "iglu:a/b/jsonschema/1-0-0", "data": {}}]}
    assert event({"co": contexts}).context["snowplow"]["contexts"] == contexts["data"]
