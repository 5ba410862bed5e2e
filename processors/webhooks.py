"""Webhook delivery: the HTTP sender and the deliverer the webhook agents run.

The workflow stage never calls a webhook: it produces a :class:`WebhookDelivery` to
``trackflow.webhooks.v1``. The ``webhooks`` agent makes the first attempt; a failed attempt
that may be retried goes to ``trackflow.webhooks.retry.v1`` with a due time (capped
exponential backoff with full jitter, never before a server's ``Retry-After``), where the
``webhook_retries`` agent waits for it without holding up any other message. Every attempt
sends the call's ``Idempotency-Key``. After ``max_attempts`` (or an answer that retrying
cannot fix: a 4xx other than 408/425/429, a refused target, a missing secret) the call is
dead-lettered to ``trackflow.webhooks.dead.v1`` with the last error, and
``webhook_deliveries`` says so.

Outbound safety: the host is resolved once, every address is checked
(:func:`processors.workflow.check_webhook_target`: loopback, private, link-local ... are
refused unless allow-listed) and the request goes to the checked address (the ``Host``
header and TLS server name stay the URL's). Redirects are not followed. Secret header values
come from settings and never appear in a log line, an error or the database.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv6Address, ip_address
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from processors.metrics import WorkerMetrics
from processors.retry import retry_while_retriable
from processors.workflow import (
    IDEMPOTENCY_HEADER,
    UnsafeWebhookTarget,
    check_webhook_target,
    is_retriable_status,
    retry_delay,
)
from processors.workflow.safety import IPAddress
from processors.workflow_stage import Outgoing
from schemas import encode
from schemas.rules import WebhookCall, WebhookDeadLetter, WebhookDelivery
from schemas.rules._syntax import SECRET_REF
from schemas.topics import WEBHOOKS_DEAD, WEBHOOKS_RETRY

__all__ = ["Attempt", "DeliveryLog", "WebhookDeliverer", "WebhookSender", "resolve_secrets"]

log = logging.getLogger(__name__)
Resolve = Callable[[str, int], Awaitable[list[str]]]
Send = Callable[[Sequence[Outgoing]], Awaitable[list[BaseException | None]]]


class DeliveryLog(Protocol):
    """Where attempts are recorded (``WorkflowStore`` in the worker)."""

    async def delivered(self, idempotency_key: str) -> bool: ...

    async def record_attempt(
        self,
        call: WebhookCall,
        attempt: int,
        status: str,
        status_code: int | None,
        error: str | None,
    ) -> None: ...


@dataclass(frozen=True)
class Attempt:
    """The result of one attempt: delivered, or an error that may or may not be retried."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retriable: bool = False
    retry_after: float | None = None


class MissingSecret(ValueError):
    pass


def resolve_secrets(
    secret_headers: Mapping[str, str], secrets: Mapping[str, SecretStr]
) -> dict[str, str]:
    """Header values with every ``${secret:NAME}`` replaced; MissingSecret naming the secret
    (never its value) when one is not configured."""

    def value(found: object) -> str:
        name = found.group(1)  # type: ignore[attr-defined]
        if name not in secrets:
            raise MissingSecret(
                f"secret {name!r} is not configured (set it in TRACKFLOW_WEBHOOK_SECRETS)"
            )
        return secrets[name].get_secret_value()

    return {header: SECRET_REF.sub(value, text) for header, text in secret_headers.items()}


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class WebhookSender:
    """Makes one attempt of a call over HTTP(S), to a checked address only."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        allow_list: Sequence[str] = (),
        secrets: Mapping[str, SecretStr] | None = None,
        resolve: Resolve = resolve_host,
    ) -> None:
        self._client = client
        self._allow_list = tuple(allow_list)
        self._secrets = dict(secrets or {})
        self._resolve = resolve

    async def attempt(self, call: WebhookCall) -> Attempt:
        try:
            secret_headers = resolve_secrets(call.secret_headers, self._secrets)
            address = await self._address(call.url)
        except (MissingSecret, UnsafeWebhookTarget) as exc:
            return Attempt(False, error=str(exc))
        except OSError as exc:
            return Attempt(False, error=f"cannot resolve the host: {exc}", retriable=True)
        url, host_header, sni = _pinned(call.url, address)
        headers = {**call.headers, **secret_headers, IDEMPOTENCY_HEADER: call.idempotency_key}
        headers["Host"] = host_header
        try:
            response = await self._client.request(
                call.method,
                url,
                headers=headers,
                json=call.body if call.body is not None else None,
                timeout=call.timeout_seconds,
                follow_redirects=False,
                extensions={"sni_hostname": sni} if sni else {},
            )
        except httpx.TimeoutException:
            return Attempt(False, error=f"timed out after {call.timeout_seconds}s", retriable=True)
        except httpx.HTTPError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:300], retriable=True)
        return _judge(response)

    async def _address(self, url: str) -> IPAddress:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            ip_address(host)
            resolved: list[str] = []  # a literal address is checked as it is
        except ValueError:
            resolved = await self._resolve(host, port)
        return check_webhook_target(url, resolved, self._allow_list)[0]


def _pinned(url: str, address: IPAddress) -> tuple[str, str, str | None]:
    """The URL with the checked address as its host, the Host header, the TLS server name."""
    parts = urlsplit(url)
    host = f"[{address}]" if isinstance(address, IPv6Address) else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    original = parts.netloc
    sni = parts.hostname if parts.scheme == "https" else None
    return urlunsplit(parts._replace(netloc=netloc)), original, sni


def _judge(response: httpx.Response) -> Attempt:
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(True, code)
    if is_retriable_status(code):
        return Attempt(False, code, f"HTTP {code}", True, _retry_after(response))
    if 300 <= code < 400:
        return Attempt(False, code, f"HTTP {code}: redirects are not followed")
    return Attempt(False, code, f"HTTP {code}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class WebhookDeliverer:
    """Handles one delivery request: waits for its due time, attempts, then records it as
    delivered, schedules the next attempt, or dead-letters it."""

    def __init__(
        self,
        sender: WebhookSender,
        store: DeliveryLog,
        send: Send,
        metrics: WorkerMetrics,
        clock: Callable[[], datetime],
        retry_base_seconds: float = 1.0,
        retry_cap_seconds: float = 600.0,
        db_retry_cap: float = 10.0,
        max_in_flight: int = 100,
    ) -> None:
        self._sender = sender
        self._store = store
        self._send = send
        self._metrics = metrics
        self._clock = clock
        self._base = retry_base_seconds
        self._cap = retry_cap_seconds
        self._db_retry_cap = db_retry_cap
        self._slots = asyncio.Semaphore(max_in_flight)

    async def handle(self, delivery: WebhookDelivery) -> None:
        wait = (delivery.due_at - self._clock()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        call = delivery.call
        if await self._db(lambda: self._store.delivered(call.idempotency_key)):
            return  # a replayed request for a call delivered already
        async with self._slots:
            result = await self._sender.attempt(call)
        if result.delivered:
            await self._record(delivery, "delivered", result)
        elif result.retriable and delivery.attempt < call.max_attempts:
            await self._schedule_retry(delivery, result)
        else:
            await self._dead_letter(delivery, result)

    async def _schedule_retry(self, delivery: WebhookDelivery, result: Attempt) -> None:
        delay = retry_delay(
            delivery.attempt,
            base_seconds=self._base,
            cap_seconds=self._cap,
            retry_after=result.retry_after,
        )
        following = WebhookDelivery(
            call=delivery.call,
            attempt=delivery.attempt + 1,
            due_at=self._clock() + timedelta(seconds=delay),
            last_error=result.error,
        )
        key = delivery.call.idempotency_key.encode()
        await self._produce(Outgoing(WEBHOOKS_RETRY, key, encode(following)))
        log.info(
            "webhook %s attempt %d failed (%s); retrying in %.1fs",
            delivery.call.idempotency_key,
            delivery.attempt,
            result.error,
            delay,
        )
        await self._record(delivery, "retrying", result)

    async def _dead_letter(self, delivery: WebhookDelivery, result: Attempt) -> None:
        dead = WebhookDeadLetter(
            call=delivery.call,
            attempts=delivery.attempt,
            error=result.error or "failed",
            failed_at=self._clock(),
        )
        key = delivery.call.idempotency_key.encode()
        await self._produce(Outgoing(WEBHOOKS_DEAD, key, encode(dead)))
        log.warning(
            "webhook %s (event %s, rule %s) dead-lettered after %d attempts: %s",
            delivery.call.idempotency_key,
            delivery.call.event_id,
            delivery.call.rule_id,
            delivery.attempt,
            result.error,
        )
        await self._record(delivery, "dead_letter", result)

    async def _record(self, delivery: WebhookDelivery, status: str, result: Attempt) -> None:
        call, attempt = delivery.call, delivery.attempt
        await self._db(
            lambda: self._store.record_attempt(
                call, attempt, status, result.status_code, result.error
            )
        )
        outcome = {"retrying": "retry"}.get(status, status)
        self._metrics.webhook_deliveries.labels(outcome, str(attempt)).inc()

    async def _produce(self, record: Outgoing) -> None:
        [error] = await self._send([record])
        if error is not None:
            raise error

    async def _db(self, operation: Callable[[], Awaitable[object]]) -> object:
        return await retry_while_retriable(operation, "record webhook", self._db_retry_cap)
