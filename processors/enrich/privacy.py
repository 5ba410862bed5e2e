"""The source's privacy options, applied to the event after every enricher has run.

* IP (``EnrichOptions.ip``): ``full`` keeps it, ``anonymized`` keeps the /24 (IPv4) or /48
  (IPv6), ``none`` drops it — in ``request.ip``, ``context.ip`` and ``enrichment.ip`` alike.
  An address that cannot be parsed is dropped unless the policy is ``full``.
* Hashing (``EnrichOptions.hash_fields``): every string, number and boolean below each path is
  replaced by ``sha256(salt + value)`` in hex, where ``value`` is the string's UTF-8 (numbers
  and booleans: their JSON text) — so ``encode(sha256(salt || value), 'hex')`` in PostgreSQL
  finds the same digest. Dicts on the way are copied, never changed in place.

Hashing without a salt is refused (:class:`~processors.errors.InvalidEvent`): unsalted
digests of emails or phone numbers are reversible by lookup.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from processors.enrich.ip import MAX_IP_TEXT, anonymize_ip, client_ip_text, parse_ip
from processors.errors import InvalidEvent
from schemas import RawEvent
from schemas.enrichment import IpPolicy

if TYPE_CHECKING:
    from processors.enrich.context import EnrichContext

__all__ = ["STAGE", "apply_privacy", "hash_value", "kept_ip", "privacy_update"]

STAGE = "enrich"


def kept_ip(value: str | None, policy: IpPolicy) -> str | None:
    """What ``policy`` keeps of an IP as sent (port stripped unless it is kept verbatim)."""
    if value is None or policy == "none":
        return None
    if len(value) > MAX_IP_TEXT:  # not an address; kept out of the cache
        return value if policy == "full" else None
    return _kept_ip(value, policy)


@lru_cache(maxsize=65_536)
def _kept_ip(value: str, policy: IpPolicy) -> str | None:
    address = parse_ip(value)
    if address is None:
        return value if policy == "full" else None
    return str(address if policy == "full" else anonymize_ip(address))


def hash_value(value: object, salt: bytes) -> object:
    """Each string/number/boolean leaf of ``value`` as its salted SHA-256 hex digest."""
    if isinstance(value, str):
        return hashlib.sha256(salt + value.encode("utf-8", "surrogatepass")).hexdigest()
    if isinstance(value, (bool, float)):
        return hashlib.sha256(salt + orjson.dumps(value)).hexdigest()
    if isinstance(value, int):  # str(), not orjson: Python ints may exceed 64 bits
        return hashlib.sha256(salt + str(value).encode()).hexdigest()
    if isinstance(value, dict):
        return {key: hash_value(item, salt) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hash_value(item, salt) for item in value]
    return value


def apply_privacy(event: RawEvent, context: EnrichContext) -> tuple[RawEvent, str | None]:
    """The event as the source allows it to be kept, and the client IP to record."""
    update, ip = privacy_update(event, context)
    return (RawEvent.model_validate({**event.__dict__, **update}) if update else event), ip


def privacy_update(event: RawEvent, context: EnrichContext) -> tuple[dict[str, Any], str | None]:
    """The event fields the source's options change, as plain values to validate into a new
    event (``request`` as a dict), and the client IP to record (an address, or None when there
    is none or it is not to be kept).

    Raises :class:`InvalidEvent` when fields are to be hashed but there is no salt.
    """
    options = context.options
    sent = client_ip_text(event, options)
    ip = kept_ip(sent, options.ip) if parse_ip(sent) is not None else None
    update: dict[str, Any] = {}
    if event.request.ip is not None and options.ip != "full":
        update["request"] = {**event.request.__dict__, "ip": kept_ip(event.request.ip, options.ip)}
    if "ip" in event.context and options.ip != "full":
        update["context"] = _without_context_ip(event.context, options.ip)
    if options.hash_fields:
        if not context.hash_salt:
            raise InvalidEvent(
                STAGE,
                f"source {event.source_id!r} hashes {', '.join(options.hash_fields)} but no "
                "hash salt is configured (TRACKFLOW_HASH_SALT)",
                event.id,
            )
        for path in options.hash_fields:
            root, *keys = path.split(".")
            current = update.get(root, getattr(event, root))
            update[root] = _hashed(current, keys, context.hash_salt)
    return update, ip


def _without_context_ip(values: dict[str, Any], policy: IpPolicy) -> dict[str, Any]:
    copied = dict(values)
    raw = copied.get("ip")
    kept = kept_ip(raw, policy) if isinstance(raw, str) else None
    if kept is None:
        del copied["ip"]
    else:
        copied["ip"] = kept
    return copied


def _hashed(values: dict[str, Any], keys: list[str], salt: bytes) -> dict[str, Any]:
    """A copy of ``values`` with the value at ``keys`` hashed (unchanged when it is absent)."""
    head, *tail = keys
    if head not in values:
        return values
    copied = dict(values)
    if not tail:
        copied[head] = hash_value(values[head], salt)
    elif isinstance(values[head], dict):
        copied[head] = _hashed(values[head], tail, salt)
    return copied
