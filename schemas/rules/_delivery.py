"""Messages of webhook delivery: a call on its way (first attempt or a retry), and a call
that exhausted its attempts (dead letter)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.rules._results import WebhookCall

__all__ = ["WebhookDeadLetter", "WebhookDelivery"]


class WebhookDelivery(BaseModel):
    """On ``trackflow.webhooks.v1`` (attempt 1) and ``trackflow.webhooks.retry.v1`` (later
    attempts): make attempt ``attempt`` of ``call`` at ``due_at`` or later."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    call: WebhookCall
    attempt: int = Field(default=1, ge=1)
    due_at: datetime
    last_error: str | None = None


class WebhookDeadLetter(BaseModel):
    """On ``trackflow.webhooks.dead.v1``: the call, how many attempts were made, and why the
    last one failed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    call: WebhookCall
    attempts: int
    error: str
    failed_at: datetime
