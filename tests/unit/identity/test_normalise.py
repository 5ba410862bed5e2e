"""Identifier normalisation and blocked values, as tables."""

from __future__ import annotations

import hashlib

import pytest

from processors.identity import (
    DEFAULT_BLOCKED_VALUES,
    BlockedIdentifier,
    IdentifierKind,
    InvalidIdentifier,
    is_blocked,
    normalise_email,
    normalise_identifier,
    normalise_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee@Example.COM \n", "ann.lee@example.com"),
        ("ANN+news@EXAMPLE.co.uk", "ann+news@example.co.uk"),
        ("ann@example.com.", "ann@example.com"),
        ("JOSE\u0301@example.com", "jos\u00e9@example.com"),  # NFC: e + combining acute -> é
    ],
)
def test_emails_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["ann", "ann@", "@example.com", "ann@example", "a@b@example.com", "ann lee@example.com"]
)
def test_malformed_emails_are_refused_with_the_value(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalise_email(raw)
    assert caught.value.identifier_type == "email"
    assert repr(raw) in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "default_country", "expected"),
    [
        ("+44 20 7946 0958", None, "442079460958"),
        ("+44 (0)20 7946 0958", None, "442079460958"),
        ("0044 20 7946 0958", None, "442079460958"),
        ("+1 (415) 555-2671", None, "14155552671"),
        ("+49 30/901820", None, "4930901820"),
        ("020 7946 0958", "44", "442079460958"),
        ("(415) 555.2671", "1", "14155552671"),
        (" +33 1 42 68 53 00 ", "44", "33142685300"),
    ],
)
def test_phones_become_digits_with_the_country_code(
    raw: str, default_country: str | None, expected: str
) -> None:
    assert normalise_phone(raw, default_country) == expected


@pytest.mark.parametrize(
    ("raw", "default_country", "problem"),
    [
        ("020 7946 0958", None, "no default country code"),
        ("+44 20 7946 0958 ext 12", None, "may only hold digits"),
        ("+44 20 7946 0958 x", "44", "may only hold digits"),
        ("+12345", None, "7-15 digits"),
        ("+44 2079 4609 5812 3456", None, "7-15 digits"),
        ("+", None, "may only hold digits"),
    ],
)
def test_bad_phones_are_refused_with_the_reason(
    raw: str, default_country: str | None, problem: str
) -> None:
    with pytest.raises(InvalidIdentifier, match=problem):
        normalise_phone(raw, default_country)


BLOCKED = [
    "",
    "   ",
    "null",
    "NULL",
    " Null ",
    "undefined",
    "none",
    "None",
    "nil",
    "anonymous",
    "Guest",
    "0",
    "-1",
    "[object Object]",
    "NaN",
    "nan",
]


@pytest.mark.parametrize("value", BLOCKED)
def test_placeholders_are_blocked_case_insensitively_after_trimming(value: str) -> None:
    assert is_blocked(value, DEFAULT_BLOCKED_VALUES)
    with pytest.raises(BlockedIdentifier):
        normalise_identifier("user_id", "text", value, blocked=DEFAULT_BLOCKED_VALUES)


@pytest.mark.parametrize("value", ["ann", "00", "1", "null-user", "guest1", "nothing"])
def test_real_values_are_not_blocked(value: str) -> None:
    assert not is_blocked(value, DEFAULT_BLOCKED_VALUES)


@pytest.mark.parametrize(
    ("raw", "identifier_type", "kind"),
    [
        (0, "user_id", "text"),
        (-1, "user_id", "text"),
        (float("nan"), "user_id", "text"),
        ("NULL@", "email", "email"),
        ("  null  ", "phone", "phone"),
    ],
)
def test_blocked_values_of_any_shape_are_refused(
    raw: object, identifier_type: str, kind: IdentifierKind
) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_identifier(identifier_type, kind, raw, blocked=DEFAULT_BLOCKED_VALUES)


def test_configured_blocked_values_replace_the_defaults() -> None:
    blocked = frozenset({"test@example.com"})
    with pytest.raises(BlockedIdentifier):
        normalise_identifier("email", "email", " TEST@example.com ", blocked=blocked)
    assert normalise_identifier("user_id", "text", "null", blocked=blocked).value == "null"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" u-42 ", "u-42"), (42, "42"), ("Ann", "Ann")],
)
def test_text_identifiers_are_trimmed_and_keep_case(raw: object, expected: str) -> None:
    identifier = normalise_identifier("user_id", "text", raw, blocked=DEFAULT_BLOCKED_VALUES)
    assert (identifier.type, identifier.value, identifier.hashed) == ("user_id", expected, False)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [(True, "boolean"), (1.5, "float"), (None, "null"), (["a"], "list"), ({"a": 1}, "dict")],
)
def test_non_text_values_are_refused_naming_the_type(raw: object, problem: str) -> None:
    with pytest.raises(InvalidIdentifier, match=problem):
        normalise_identifier("user_id", "text", raw, blocked=DEFAULT_BLOCKED_VALUES)


def test_hashing_is_salted_sha256_of_the_normalised_value() -> None:
    identifier = normalise_identifier(
        "email", "email", " Ann@Example.com", blocked=DEFAULT_BLOCKED_VALUES, salt=b"pepper"
    )
    expected = hashlib.sha256(b"pepper" + b"ann@example.com").hexdigest()
    assert (identifier.value, identifier.hashed) == (expected, True)


def test_reasons_for_hashed_types_do_not_carry_the_value() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalise_identifier(
            "email", "email", "ann.private", blocked=DEFAULT_BLOCKED_VALUES, salt=b"pepper"
        )
    assert "ann.private" not in str(caught.value)
    assert "not an address" in caught.value.reason
