"""Fuzzing the running gateway (a real process on a real broker): no input gets a 5xx, and
every 4xx is the JSON error envelope with ``error.message``.

- schemathesis generates requests from the gateway's own ``/openapi.json``, which describes
  the body of every ingest route (Tracardi, Segment, Snowplow, collect); generated bodies
  are pointed at the registered source (``source.id``, the Segment write key, the Snowplow
  app id) three times in four, so that they reach the publisher.
- ``GET`` endpoints have no parameters, so schemathesis has one request for each; hypothesis
  sends them random query strings and headers instead.
- hypothesis sends ``POST /track`` random JSON, mutated valid payloads, random bytes and
  random content types; the Segment and Snowplow routes random bodies, some gzip-encoded.
- then the worker behind the gateway must take everything the gateway accepted.

The gateway runs with a broker, database and worker of its own (``faults.open_stack``), so
nothing the fuzzing gets accepted reaches the pipeline that the other tests share.

Every loop is bounded by ``max_examples`` and every request by a timeout.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.integration.faults import SOURCE_ID, Stack, open_stack, running, wait_drained

REQUESTS_PER_ENDPOINT = 1000
OTHER_OPERATION_EXAMPLES = 40  # positive and negative each, per route other than /track
ALIAS_EXAMPLES = 10  # for the Segment short forms, which share their long form's handler
SEGMENT_ALIASES = {f"/v1/{short}" for short in "btipsga"}
MAX_BODY_BYTES = 1_048_576  # TRACKFLOW_MAX_BODY_BYTES of the gateway (the default)
TIMEOUT = 15.0
GET_PATHS = ("/healthz", "/readyz", "/metrics")


def _fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.target, Phase.shrink],
    )


def check_answer(what: str, status: int, content: bytes) -> None:
    """No 5xx; a 4xx is ``{"error": {"message": "..."}}``; a 2xx on /track has event ids."""
    shown = content[:300]
    assert status < 500, f"{what} answered {status}: {shown!r}"
    if 400 <= status < 500:
        try:
            message = orjson.loads(content)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise AssertionError(
                f"{what} answered {status} without error.message: {shown!r}"
            ) from None
        assert isinstance(message, str) and message, f"{what}: empty error.message"


@dataclass(frozen=True)
class Target:
    gateway_url: str
    source_id: str
    stack: Stack


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A broker, database, gateway and worker of its own: whatever the fuzzing gets accepted
    must not reach the pipeline the other tests share."""
    stack = open_stack("fuzz")
    try:
        stack.start()
        yield Target(stack.gateway_url, SOURCE_ID, stack)
    finally:
        stack.close()


@pytest.fixture(scope="module")
def openapi(target: Target) -> dict[str, Any]:
    response = httpx.get(f"{target.gateway_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def bounded_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document with small free-form objects and arrays in every body schema."""
    described = copy.deepcopy(document)
    assert "requestBody" in described["paths"]["/track"]["post"], "POST /track has no body"
    _bounded(described.get("components", {}).get("schemas", {}))
    for path in described["paths"].values():
        _bounded(path)
    return described


def _bounded(node: Any) -> None:
    """Small free-form objects and arrays: drawing large ones takes hypothesis ~0.1 s a case
    (the hypothesis-driven test below sends large and deep ones)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("additionalProperties") is True:
            node.setdefault("maxProperties", 3)
        if node.get("type") == "array":
            node.setdefault("maxItems", 4)
        for value in node.values():
            _bounded(value)
    elif isinstance(node, list):
        for value in node:
            _bounded(value)


def _registered(source_id: str) -> Any:
    """Point three in four generated payloads at the registered source, so that they reach
    the publisher (a random source id or write key is answered 401): ``source.id`` for
    ``/track``, the write key (the source's id, as it has none of its own) for Segment, the
    app id of every event for Snowplow."""
    basic = "Basic " + base64.b64encode(f"{source_id}:".encode()).decode()

    def point(drawn: tuple[Any, int]) -> Any:
        case, roll = drawn
        if not roll:
            return case
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("source"), dict):
            body["source"]["id"] = source_id
        if case.path.startswith("/v1/") and "projects" not in case.path:
            case.headers = {**(case.headers or {}), "authorization": basic}
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            for item in body["data"]:
                if isinstance(item, dict):
                    item["aid"] = source_id
        if isinstance(case.query, dict) and "aid" in case.query:
            case.query["aid"] = source_id
        if isinstance(case.path_parameters, dict) and "source_id" in case.path_parameters:
            case.path_parameters["source_id"] = source_id
        return case

    return point


@pytest.mark.timeout(1200)  # about 3,000 requests, on a machine shared with other suites
def test_schemathesis_requests_from_the_openapi_document(
    target: Target, openapi: dict[str, Any]
) -> None:
    schema = schemathesis.openapi.from_dict(bounded_document(openapi))
    session = requests.Session()
    sent: Counter[tuple[str, int]] = Counter()

    def fuzz(label: str, strategy: st.SearchStrategy[Any], examples: int) -> None:
        @_fuzz_settings(examples)
        @given(case=strategy)
        def call(case: Any) -> None:
            response = case.call(base_url=target.gateway_url, session=session, timeout=TIMEOUT)
            sent[(label, response.status_code)] += 1
            what = f"{label} ({case.as_curl_command()})"
            check_answer(what, response.status_code, response.content)

        call()

    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        # /track: 500 valid payloads (most of them for the registered source) and 500 invalid
        # ones; every other route a smaller number of each
        examples = (
            500
            if operation.path in ("/track", *GET_PATHS)
            else ALIAS_EXAMPLES
            if operation.path in SEGMENT_ALIASES
            else OTHER_OPERATION_EXAMPLES
        )
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        if operation.path not in GET_PATHS:
            positive = st.tuples(positive, st.integers(0, 3)).map(_registered(target.source_id))
        fuzz(operation.label, positive, examples)
        try:
            fuzz(
                operation.label,
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                examples,
            )
        except Unsatisfiable:
            assert operation.method.upper() == "GET"  # nothing invalid to send: no parameters
    print(f"schemathesis sent (operation, status): {dict(sent)}")
    per_operation = Counter(label for label, _ in sent.elements())
    assert per_operation["POST /track"] >= REQUESTS_PER_ENDPOINT, per_operation
    assert sent[("POST /track", 200)] >= 50, "few generated payloads reached the publisher"
    assert per_operation["POST /v1/batch"] >= OTHER_OPERATION_EXAMPLES, per_operation
    assert per_operation["POST /com.snowplowanalytics.snowplow/tp2"] >= OTHER_OPERATION_EXAMPLES
    assert per_operation["GET /i"] >= OTHER_OPERATION_EXAMPLES, per_operation
    assert all(per_operation[f"GET {path}"] >= 1 for path in GET_PATHS), per_operation


_TOKEN = st.text(  # what HTTP allows in a header name (RFC 9110 token)
    st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
    ),
    min_size=1,
    max_size=20,
)
_HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200).map(
    str.strip
)
_HEADER_NAME = st.sampled_from(
    ["accept", "accept-encoding", "accept-language", "origin", "referer", "user-agent",
     "x-forwarded-for", "content-type", "range", "if-none-match", "cookie", "authorization"]
) | _TOKEN.map(lambda t: f"x-{t}".lower())  # fmt: skip


@given(
    path=st.sampled_from(GET_PATHS),
    query=st.dictionaries(st.text(max_size=30), st.text(max_size=100), max_size=5),
    headers=st.dictionaries(_HEADER_NAME, _HEADER_VALUE, max_size=6),
)
@_fuzz_settings(len(GET_PATHS) * REQUESTS_PER_ENDPOINT)
def _get_with_random_query_and_headers(
    client: httpx.Client,
    sent: Counter[str],
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
) -> None:
    response = client.get(path, params=query, headers=headers)
    sent[path] += 1
    check_answer(f"GET {path}?{query} {headers}", response.status_code, response.content)


def test_get_endpoints_take_random_queries_and_headers(target: Target) -> None:
    sent: Counter[str] = Counter()
    with httpx.Client(base_url=target.gateway_url, timeout=TIMEOUT) as client:
        # one extra pass per path tops up what the random choice of path left short
        _get_with_random_query_and_headers(client, sent)
        for path in GET_PATHS:
            for _ in range(max(0, REQUESTS_PER_ENDPOINT - sent[path])):
                response = client.get(path)
                sent[path] += 1
                check_answer(f"GET {path}", response.status_code, response.content)
    assert all(sent[path] >= REQUESTS_PER_ENDPOINT for path in GET_PATHS), sent


# --------------------------------------------------------------------------------------------
# POST /track bodies from hypothesis
# --------------------------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5)
    ),
    max_leaves=30,
)
_OBJECTS = st.dictionaries(st.text(max_size=10), JSON, max_size=3)
_KEYS = [
    "source",
    "profile",
    "session",
    "events",
    "context",
    "properties",
    "options",
    "id",
    "type",
    "tags",
]


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated_payloads(draw: st.DrawFn, source_id: str) -> Any:
    """A valid payload with a few random edits: values replaced, keys dropped or added,
    long strings, deep nesting, many events."""
    events = [
        {"type": draw(st.text(min_size=1, max_size=20)), "properties": draw(_OBJECTS)}
        for _ in range(draw(st.integers(1, 4)))
    ]
    payload: dict[str, Any] = {
        "source": {"id": source_id},
        "profile": {"id": draw(st.text(min_size=1, max_size=30))},
        "session": {"id": draw(st.text(min_size=1, max_size=30))},
        "events": events,
        "properties": draw(_OBJECTS),
    }
    targets = [payload, *events, payload["source"], payload["profile"]]
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(targets))
        key = draw(st.sampled_from(_KEYS))
        edit = draw(st.sampled_from(["replace", "drop", "long", "deep", "deep property", "many"]))
        if edit == "replace":
            target[key] = draw(JSON)
        elif edit == "drop":
            target.pop(key, None)
        elif edit == "long":
            target[key] = "x" * draw(st.integers(100, 200_000))
        elif edit == "deep":
            target[key] = _nested(draw(st.integers(1, 600)))
        elif edit == "deep property":  # valid, so it reaches the publisher
            event = draw(st.sampled_from(events))
            event["properties"] = {"nested": _nested(draw(st.integers(1, 600)))}
        elif edit == "many":
            payload["events"] = events * draw(st.integers(1, 300))
    return payload


_ACCEPTED_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/json; charset=utf-8", "",
     "text/plain;charset=UTF-8", "application/vnd.api+json"]
)  # fmt: skip
_OTHER_TYPES = st.sampled_from(
    ["*/*", "application/x-www-form-urlencoded", "multipart/form-data", "text/html",
     "application/octet-stream", "application/json; charset=latin-1"]
) | _TOKEN.map(lambda t: f"{t}/{t}")  # fmt: skip
_CONTENT_TYPES = st.integers(0, 3).flatmap(lambda i: _OTHER_TYPES if i == 0 else _ACCEPTED_TYPES)


def _json_bytes(value: Any, ascii_only: bool) -> bytes:
    """Any JSON value as bytes (the stdlib encoder: orjson refuses integers over 64 bits),
    at most twice the gateway's body limit."""
    return json.dumps(value, ensure_ascii=ascii_only).encode()[: 2 * MAX_BODY_BYTES]


def _bodies(source_id: str) -> st.SearchStrategy[bytes]:
    flags = st.booleans()
    as_json = st.builds(_json_bytes, JSON, flags)
    mutated = st.builds(_json_bytes, mutated_payloads(source_id), flags)
    raw_bytes = st.binary(max_size=2000)
    cut_short = st.builds(lambda body, cut: body[:cut], mutated, st.integers(0, 200))
    return st.one_of(mutated, mutated, as_json, raw_bytes, cut_short)


def test_track_takes_random_bodies_and_content_types(target: Target) -> None:
    sent: Counter[int] = Counter()

    @given(body=_bodies(target.source_id), content_type=_CONTENT_TYPES)
    @_fuzz_settings(1200)
    def post(client: httpx.Client, body: bytes, content_type: str) -> None:
        headers = {"content-type": content_type} if content_type else {}
        try:
            response = client.post("/track", content=body, headers=headers)
        except httpx.TransportError:
            # Over the limit the gateway answers 413 before reading the body and closes the
            # connection, which may reset it before the client has sent everything.
            assert len(body) > MAX_BODY_BYTES, f"no answer to {len(body)} bytes"
            sent[413] += 1
            return
        sent[response.status_code] += 1
        check_answer(
            f"POST /track {content_type!r} {body[:200]!r}", response.status_code, response.content
        )

    with httpx.Client(base_url=target.gateway_url, timeout=TIMEOUT) as client:
        post(client)
    print(f"POST /track statuses: {dict(sent)}")
    assert sum(sent.values()) >= REQUESTS_PER_ENDPOINT, sent
    assert sent[200] >= 20, f"few bodies reached the publisher: {dict(sent)}"


PROTOCOL_PATHS = ("/v1/batch", "/v1/t", "/v1/i", "/com.snowplowanalytics.snowplow/tp2")


@st.composite
def protocol_requests(draw: st.DrawFn, source_id: str) -> tuple[str, bytes, dict[str, str]]:
    """A path, and a body shaped for it (a Segment batch or message, a Snowplow payload) with
    random messages and valid ones edited at random, or random JSON or bytes; sometimes
    gzip-encoded (or claiming to be), sometimes in a content type that is not accepted."""
    path = draw(st.sampled_from(PROTOCOL_PATHS))
    message = st.dictionaries(
        st.sampled_from(["type", "event", "anonymousId", "userId", "messageId", "properties",
                         "traits", "context", "previousId", "groupId", "e", "aid", "eid", "cx",
                         "ue_px", "duid", "uid", "se_ac"]),
        JSON,
        max_size=6,
    )  # fmt: skip
    segment = st.fixed_dictionaries(
        {"type": st.just("track"), "event": st.text(min_size=1, max_size=20),
         "anonymousId": st.text(min_size=1, max_size=20)}
    )  # fmt: skip
    snowplow = st.fixed_dictionaries({"e": st.just("pv"), "aid": st.just(source_id)})

    def edited(valid: Any) -> Any:  # the valid fields, with random ones around them
        return st.builds(lambda v, e: {**e, **v}, valid, message)

    def items(valid: Any) -> Any:
        return st.lists(edited(valid) | message, min_size=1, max_size=5)

    if path == "/v1/batch":
        shaped = st.builds(lambda batch: {"batch": batch, "writeKey": source_id}, items(segment))
    elif path.startswith("/v1/"):
        shaped = st.builds(lambda m: {**m, "writeKey": source_id}, edited(segment) | message)
    else:
        shaped = st.builds(lambda data: {"data": data}, items(snowplow))
    kind = draw(st.integers(0, 5))
    value = draw(shaped if kind < 4 else JSON)
    body = _json_bytes(value, draw(st.booleans())) if kind < 5 else draw(st.binary(max_size=500))
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain"]))}
    if draw(st.integers(0, 4)) == 0:
        headers["content-type"] = draw(_OTHER_TYPES)
    encoding = draw(st.sampled_from(["", "", "gzip", "gzip", "gzip-claimed", "br"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    if encoding:
        headers["content-encoding"] = encoding.removesuffix("-claimed")
    return path, body, headers


def test_segment_and_snowplow_take_random_bodies(target: Target) -> None:
    sent: Counter[tuple[str, int]] = Counter()

    @given(drawn=protocol_requests(target.source_id))
    @_fuzz_settings(400)
    def post(client: httpx.Client, drawn: tuple[str, bytes, dict[str, str]]) -> None:
        path, body, headers = drawn
        response = client.post(path, content=body, headers=headers)
        sent[(path, response.status_code)] += 1
        check_answer(
            f"POST {path} {headers} {body[:200]!r}", response.status_code, response.content
        )

    with httpx.Client(base_url=target.gateway_url, timeout=TIMEOUT) as client:
        post(client)
    print(f"POST Segment/Snowplow statuses: {dict(sent)}")
    assert sum(sent.values()) >= 400, sent
    # the random bodies must also reach the accepting path, not only the refusals
    assert sum(n for (_, status), n in sent.items() if status == 200) >= 10, sent


def test_everything_the_fuzzing_got_accepted_is_stored_or_recorded_as_failed(
    target: Target,
) -> None:
    """The worker behind the fuzzed gateway takes every accepted event: it stays up and its
    consumer group catches up with every topic."""
    wait_drained(target.stack, timeout=120)
    [(stored,)] = target.stack.query("SELECT count(*) FROM events")
    failed = target.stack.query("SELECT stage, reason FROM failed_events LIMIT 5")
    print(f"fuzzing stored {stored} events; failed events: {failed}")
    assert running(target.stack.worker), target.stack.log_tail()


# --------------------------------------------------------------------------------------------
# what the fuzzing found: each fails until the gateway is fixed
# --------------------------------------------------------------------------------------------


def test_deeply_nested_properties_are_a_client_error(target: Target) -> None:
    """orjson reads 1,024 levels but writes only 254: the publish step failed with a 500."""
    body = {
        "source": {"id": target.source_id},
        "events": [{"type": "deep", "properties": {"v": _nested(300)}}],
    }
    response = httpx.post(f"{target.gateway_url}/track", json=body, timeout=TIMEOUT)
    check_answer(
        "POST /track with properties nested 300 deep", response.status_code, response.content
    )


def test_an_event_too_big_for_the_broker_is_not_answered_retry_later(target: Target) -> None:
    """A body within TRACKFLOW_MAX_BODY_BYTES (1 MiB) whose record is over the broker's
    message.max.bytes (1 MiB + 12): retrying cannot help, so no 503 with Retry-After."""

    def payload(blob: str) -> bytes:
        event = {"type": "big", "properties": {"blob": blob}}
        return orjson.dumps({"source": {"id": target.source_id}, "events": [event]})

    body = payload("x" * (MAX_BODY_BYTES - len(payload("")) - 100))
    response = httpx.post(
        f"{target.gateway_url}/track",
        content=body,
        headers={"content-type": "application/json", "user-agent": "u" * 4096},
        timeout=TIMEOUT,
    )
    assert response.status_code != 503, (
        f"{len(body)} bytes answered 503 Retry-After {response.headers.get('retry-after')}: "
        f"{response.text[:300]}"
    )
    check_answer(
        "POST /track with a record over the broker limit", response.status_code, response.content
    )


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/no-such-page"), ("PUT", "/track"), ("DELETE", "/metrics")]
)
def test_unknown_paths_and_methods_answer_with_the_error_envelope(
    target: Target, method: str, path: str
) -> None:
    response = httpx.request(method, f"{target.gateway_url}{path}", timeout=TIMEOUT)
    assert response.status_code in (404, 405)
    check_answer(f"{method} {path}", response.status_code, response.content)
