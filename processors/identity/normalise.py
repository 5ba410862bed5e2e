"""Identifier values in one canonical form, so the same person's values compare equal.

* ``email``: trimmed, Unicode NFC, lower-cased; one ``@`` between a non-empty local part and
  a dotted domain (a trailing dot on the domain is dropped). No provider rules (Gmail dots).
* ``phone``: the digits of an international number, country code first, no ``+``:
  ``"+44 20 7946 0958"`` and ``"0044 (0)20 7946 0958"`` -> ``"442079460958"``. A national
  number (no ``+`` or ``00``) gets ``default_country_code`` after dropping one trunk ``0``
  (``"020 7946 0958"`` with ``"44"`` -> ``"442079460958"``); without a default it is
  refused, since national digits of two countries can collide. Separators allowed: space
  ``-`` ``.`` ``/`` and brackets; 7 to 15 digits (E.164).
* ``text`` (user ids, other traits): trimmed, Unicode NFC, case kept. Integers are taken as
  their decimal text; booleans, other numbers, lists and objects are refused.

A value is blocked when, trimmed and case-folded, it is one of the configured placeholders
("null", "guest", "0", ...): checked on the value as sent and again after normalising.
Reasons name the value, except for hashed types (private by configuration).
Hashing is ``sha256(salt || value)`` in hex over the normalised value's UTF-8, so
``encode(sha256(salt || value), 'hex')`` in PostgreSQL finds the same digest.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

from processors.identity.config import IdentifierKind
from processors.identity.errors import BlockedIdentifier, InvalidIdentifier
from schemas.identity import Identifier

__all__ = [
    "hash_identifier_value",
    "identifier_text",
    "is_blocked",
    "normalise_email",
    "normalise_identifier",
    "normalise_phone",
    "normalise_text",
]

_PHONE_CHARS = re.compile(r"^[0-9 ()\-./]+$")
_TRUNK_ZERO = re.compile(r"\(0\)")
_MAX_LENGTH = 512


def is_blocked(value: str, blocked: frozenset[str]) -> bool:
    """Whether ``value`` is a placeholder; ``blocked`` holds trimmed, case-folded values."""
    return value.strip().casefold() in blocked


def identifier_text(identifier_type: str, raw: object) -> str:
    """The text of a JSON value sent as an identifier (strings and integers only)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        raise InvalidIdentifier(identifier_type, f"expected a string, got a boolean ({raw})")
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and math.isnan(raw):
        return "NaN"
    kind = "null" if raw is None else type(raw).__name__
    raise InvalidIdentifier(identifier_type, f"expected a string or an integer, got {kind}")


def normalise_text(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


def normalise_email(value: str) -> str:
    email = unicodedata.normalize("NFC", value.strip()).lower()
    local, at, domain = email.partition("@")
    domain = domain.rstrip(".")
    if not at or not local or "@" in domain or "." not in domain.strip("."):
        raise InvalidIdentifier("email", f"{_show(value)} is not an address (local@domain.tld)")
    if any(char.isspace() for char in email):
        raise InvalidIdentifier("email", f"{_show(value)} contains white space")
    return f"{local}@{domain}"


def normalise_phone(value: str, default_country_code: str | None = None) -> str:
    text = _TRUNK_ZERO.sub("", value.strip())
    international = text.startswith("+")
    if international:
        text = text[1:]
    if not text or not _PHONE_CHARS.match(text):
        raise InvalidIdentifier(
            "phone", f"{_show(value)} may only hold digits, '+' first, spaces, - . / ( )"
        )
    digits = re.sub(r"[^0-9]", "", text)
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if not international:
        if default_country_code is None:
            raise InvalidIdentifier(
                "phone",
                f"{_show(value)} is a national number and no default country code is "
                "configured (default_country_code)",
            )
        digits = default_country_code + digits.removeprefix("0")
    if not 7 <= len(digits) <= 15 or digits.startswith("0"):
        raise InvalidIdentifier(
            "phone", f"{_show(value)} is not a phone number (7-15 digits, country code first)"
        )
    return digits


def hash_identifier_value(value: str, salt: bytes) -> str:
    return hashlib.sha256(salt + value.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_identifier(
    identifier_type: str,
    kind: IdentifierKind,
    raw: object,
    *,
    blocked: frozenset[str],
    default_country_code: str | None = None,
    salt: bytes | None = None,
) -> Identifier:
    """The identifier for ``raw``; hashed when ``salt`` is given.

    Raises ``BlockedIdentifier`` for placeholders and ``InvalidIdentifier`` for values that
    cannot be of this kind.
    """
    text = identifier_text(identifier_type, raw)
    _refuse_blocked(identifier_type, text, blocked)
    try:
        value = _normalise(kind, text, default_country_code)
    except InvalidIdentifier as exc:
        # a hashed type is private: its reason must not carry the value
        reason = exc.reason if salt is None else exc.reason.replace(_show(text), "the value")
        raise InvalidIdentifier(identifier_type, reason) from None
    _refuse_blocked(identifier_type, value, blocked)
    if len(value) > _MAX_LENGTH:
        raise InvalidIdentifier(
            identifier_type, f"longer than {_MAX_LENGTH} characters ({len(value)})"
        )
    if salt is not None:
        return Identifier(
            type=identifier_type, value=hash_identifier_value(value, salt), hashed=True
        )
    return Identifier(type=identifier_type, value=value)


def _normalise(kind: IdentifierKind, text: str, default_country_code: str | None) -> str:
    if kind == "email":
        return normalise_email(text)
    if kind == "phone":
        return normalise_phone(text, default_country_code)
    return normalise_text(text)


def _refuse_blocked(identifier_type: str, value: str, blocked: frozenset[str]) -> None:
    if is_blocked(value, blocked):
        raise BlockedIdentifier(identifier_type, f"{_show(value)} is a blocked placeholder value")


def _show(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")
