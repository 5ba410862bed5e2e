"""The gateway's errors, each mapped to one HTTP status.

    GatewayError                    (status, code, message, details)
    ├── BadRequest              400  malformed JSON, invalid UTF-8
    ├── UnknownSource           401  source id not registered
    ├── SourceForbidden         403  source disabled, or Origin not allowed
    ├── NotFound                404  no such thing (a Segment write key without a source)
    ├── PayloadTooLarge         413  body over TRACKFLOW_MAX_BODY_BYTES
    ├── UnsupportedMediaType    415  a body that is not JSON or text/plain
    ├── RequestTimeout          408  the body did not arrive in time (slow client)
    ├── InvalidPayload          422  fails the model; ``details`` lists each field
    ├── BatchRejected      400/...  no item of a batch was valid; ``details`` lists each
    │                               (ingest_gateway.batch; the items' status when they share one)
    ├── RateLimited             429  the source's rate limit is exceeded (Retry-After)
    └── Unavailable             503  Kafka did not take the write in time (Retry-After)

Nothing that raises one of these has been published.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "GatewayError",
    "InvalidPayload",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "SourceForbidden",
    "Unavailable",
    "UnknownSource",
    "UnsupportedMediaType",
]


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(GatewayError):
    status, code = 400, "bad_request"


class UnknownSource(GatewayError):
    status, code = 401, "unknown_source"


class SourceForbidden(GatewayError):
    status, code = 403, "source_forbidden"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class PayloadTooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


class InvalidPayload(GatewayError):
    status, code = 422, "invalid_payload"


class RequestTimeout(GatewayError):
    status, code = 408, "request_timeout"


class _RetryLater(GatewayError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(_RetryLater):
    status, code = 429, "rate_limited"


class Unavailable(_RetryLater):
    status, code = 503, "unavailable"
