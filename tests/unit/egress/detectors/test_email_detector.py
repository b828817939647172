"""appliance/egress/detectors/email.py: addresses in prose, and what is not one.
Domains are the reserved example names of RFC 2606 / RFC 6761."""

from __future__ import annotations

import pytest

from appliance.egress.detectors.email import EmailDetector, is_valid_email

DETECTOR = EmailDetector()


def found(text: str) -> list[str]:
    return [text[start:end] for start, end in DETECTOR.find(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe@example.com today", ["jane.doe@example.com"]),
        ("Jane <jane.doe+tag@mail.example.org>", ["jane.doe+tag@mail.example.org"]),
        ("end of sentence: bob@example.co.uk.", ["bob@example.co.uk"]),
        (
            "o'brien@example.ie, x_y%z@sub-1.example.net",
            ["o'brien@example.ie", "x_y%z@sub-1.example.net"],
        ),
        ("IDN: user@example.xn--p1ai", ["user@example.xn--p1ai"]),
        ("(mailto:ops@example.com)", ["ops@example.com"]),
        ("UPPER@EXAMPLE.COM", ["UPPER@EXAMPLE.COM"]),
        ("quoted 'jane@example.com' here", ["jane@example.com"]),
        ('"jane@example.com"', ["jane@example.com"]),
    ],
)
def test_addresses(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost",  # no dot in the domain
        "a@b.c",  # one-letter TLD
        "@example.com",
        "user@",
        ".dot@example.com",
        "two..dots@example.com",
        "user@-example.com",
        "user@example-.com",
        "user@example..com",
        "user@example.123",
        "decorator @property.setter",
        "price 5@3.50",
    ],
)
def test_not_addresses(text: str) -> None:
    assert found(text) == []


def test_is_valid_email() -> None:
    assert is_valid_email("jane@example.com")
    assert not is_valid_email("jane@example")
    assert not is_valid_email("x" * 65 + "@example.com")
