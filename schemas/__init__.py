"""trackflow's wire contract: pydantic models for every payload and message."""

from schemas.codec import (
    InvalidMessage,
    decode_event,
    decode_raw_event,
    describe_validation_error,
    encode,
)
from schemas.config import CONFIG_VERSION, ConfigRecord, EventSource, source_key
from schemas.envelope import RAW_EVENT_VERSION, FailedEvent, RawEvent, RequestInfo
from schemas.tracardi import TrackEvent, TrackPayload

__all__ = [
    "CONFIG_VERSION",
    "RAW_EVENT_VERSION",
    "ConfigRecord",
    "EventSource",
    "FailedEvent",
    "InvalidMessage",
    "RawEvent",
    "RequestInfo",
    "TrackEvent",
    "TrackPayload",
    "decode_event",
    "decode_raw_event",
    "describe_validation_error",
    "encode",
    "source_key",
]
