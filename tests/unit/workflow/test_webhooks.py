"""The webhook sender and deliverer with the network faked by httpx.MockTransport and the
broker and database by lists: attempts, retries, dead letters, safety and secrets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from processors.metrics import WorkerMetrics
from processors.webhooks import (
    Attempt,
    MissingSecret,
    WebhookDeliverer,
    WebhookSender,
    resolve_secrets,
)
from processors.workflow_stage import Outgoing
from schemas.rules import WebhookCall, WebhookDeadLetter, WebhookDelivery
from schemas.topics import WEBHOOKS_DEAD, WEBHOOKS_RETRY
from tests.unit.workflow._support import T0

Handler = Callable[[httpx.Request], httpx.Response]


def call(url: str = "https://hooks.example.com/in", **fields: object) -> WebhookCall:
    data: dict[str, object] = {
        "rule_id": "r",
        "action_index": 0,
        "idempotency_key": "k" * 32,
        "event_id": "e1",
        "method": "POST",
        "url": url,
        "body": {"a": 1},
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        **fields,
    }
    return WebhookCall.model_validate(data)


async def public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


async def private(host: str, port: int) -> list[str]:
    return ["10.1.2.3"]


def sender(handler: Handler, resolve=public, allow: Sequence[str] = (), **secrets: str):  # type: ignore[no-untyped-def]
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    given = {k: SecretStr(v) for k, v in secrets.items()}
    return WebhookSender(client, allow, given, resolve)


async def test_an_attempt_goes_to_the_checked_address_with_host_key_and_secret() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    c = call(headers={"X-Plan": "gold"}, secret_headers={"Authorization": "Bearer ${secret:TOKEN}"})
    result = await sender(handler, TOKEN="t0ps3cret").attempt(c)
    assert result == Attempt(True, 204)
    [request] = seen
    assert request.url.host == "93.184.215.14", "connects to the address it checked"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["idempotency-key"] == "k" * 32
    assert request.headers["authorization"] == "Bearer t0ps3cret"
    assert request.headers["x-plan"] == "gold"
    assert orjson.loads(request.content) == {"a": 1}


async def test_private_targets_are_refused_unless_allow_listed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    refused = await sender(handler, private).attempt(call())
    assert not refused.delivered and not refused.retriable
    assert "10.1.2.3, a private address" in (refused.error or "")
    loopback = await sender(handler).attempt(call("http://127.0.0.1:9/x"))
    assert "loopback" in (loopback.error or "") and not loopback.retriable
    allowed = await sender(handler, allow=["127.0.0.1"]).attempt(call("http://127.0.0.1:9/x"))
    assert allowed.delivered


@pytest.mark.parametrize(
    ("status", "retriable", "error"),
    [(500, True, "HTTP 500"), (429, True, "HTTP 429"), (404, False, "HTTP 404")],
)
async def test_answers_are_judged(status: int, retriable: bool, error: str) -> None:
    result = await sender(lambda r: httpx.Response(status, headers={"retry-after": "7"})).attempt(
        call()
    )
    assert (result.delivered, result.retriable, result.error) == (False, retriable, error)
    assert result.retry_after == (7.0 if retriable else None)


async def test_a_timeout_is_retriable_and_a_redirect_is_not_followed() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    timed_out = await sender(slow).attempt(call())
    assert timed_out.retriable and timed_out.error == "timed out after 2.0s"
    moved = await sender(
        lambda r: httpx.Response(302, headers={"location": "http://10.0.0.1"})
    ).attempt(call())
    assert not moved.retriable and "redirects are not followed" in (moved.error or "")


def test_a_missing_secret_is_named_and_its_value_never_shown() -> None:
    headers = {"Authorization": "Bearer ${secret:TOKEN}"}
    assert resolve_secrets(headers, {"TOKEN": SecretStr("v")}) == {"Authorization": "Bearer v"}
    with pytest.raises(MissingSecret, match="secret 'TOKEN' is not configured"):
        resolve_secrets(headers, {"OTHER": SecretStr("v")})


class Log:
    def __init__(self) -> None:
        self.attempts: list[tuple[int, str, int | None, str | None]] = []
        self.done: set[str] = set()

    async def delivered(self, idempotency_key: str) -> bool:
        return idempotency_key in self.done

    async def record_attempt(
        self, call: WebhookCall, attempt: int, status: str, code: int | None, error: str | None
    ) -> None:
        self.attempts.append((attempt, status, code, error))
        if status == "delivered":
            self.done.add(call.idempotency_key)


class World:
    def __init__(self, handler: Handler) -> None:
        self.sent: list[Outgoing] = []
        self.log = Log()
        self.registry = CollectorRegistry()
        self.deliverer = WebhookDeliverer(
            sender(handler),
            self.log,
            self.send,
            WorkerMetrics(self.registry),
            lambda: T0,
            retry_base_seconds=1.0,
            retry_cap_seconds=8.0,
        )

    async def send(self, records: Sequence[Outgoing]) -> list[BaseException | None]:
        self.sent.extend(records)
        return [None for _ in records]

    def count(self, outcome: str, attempt: int) -> float | None:
        labels = {"outcome": outcome, "attempt": str(attempt)}
        return self.registry.get_sample_value("trackflow_webhook_deliveries_total", labels)


def request(attempt: int = 1, due_at: datetime = T0) -> WebhookDelivery:
    return WebhookDelivery(call=call(), attempt=attempt, due_at=due_at)


async def test_a_failed_attempt_is_rescheduled_with_backoff_under_the_same_key() -> None:
    world = World(lambda r: httpx.Response(503))
    await world.deliverer.handle(request())
    [retry] = world.sent
    following = WebhookDelivery.model_validate_json(retry.value)
    assert retry.topic == WEBHOOKS_RETRY and retry.key == b"k" * 32
    assert following.attempt == 2 and following.call == call()
    assert T0 <= following.due_at <= T0 + timedelta(seconds=1), "jittered, at most base"
    assert following.last_error == "HTTP 503"
    assert world.log.attempts == [(1, "retrying", 503, "HTTP 503")]
    assert world.count("retry", 1) == 1


async def test_the_last_attempt_is_dead_lettered_with_the_reason() -> None:
    world = World(lambda r: httpx.Response(500))
    await world.deliverer.handle(request(attempt=3))
    [dead] = world.sent
    letter = WebhookDeadLetter.model_validate_json(dead.value)
    assert dead.topic == WEBHOOKS_DEAD
    assert (letter.attempts, letter.error) == (3, "HTTP 500")
    assert world.log.attempts == [(3, "dead_letter", 500, "HTTP 500")]
    assert world.count("dead_letter", 3) == 1


async def test_a_delivered_call_is_recorded_and_a_replay_is_not_sent_again() -> None:
    hits: list[httpx.Request] = []
    world = World(lambda r: hits.append(r) or httpx.Response(200))  # type: ignore[func-returns-value]
    await world.deliverer.handle(request())
    await world.deliverer.handle(request())
    assert len(hits) == 1 and world.sent == []
    assert world.log.attempts == [(1, "delivered", 200, None)]
    assert world.count("delivered", 1) == 1
