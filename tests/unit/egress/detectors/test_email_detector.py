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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Japanese and Chinese put no space around an address: kana, kanji and
        # full-width punctuation end it like a space would.
        ("担当者の連絡先はtanaka.taro@example.jpです。", ["tanaka.taro@example.jp"]),
        ("メール：ops@example.com、電話", ["ops@example.com"]),  # noqa: RUF001
        ("请发邮件到zhang.wei@example.cn联系", ["zhang.wei@example.cn"]),
        ("담당자kim@example.kr에게", ["kim@example.kr"]),
        ("（ｍａｉｌ）jane@example.com。", ["jane@example.com"]),  # noqa: RUF001
        ("先" * 70 + "tanaka@example.jp", ["tanaka@example.jp"]),  # however long the prose
        # A local part ending in kanji (RFC 6531) is taken with the run before it: no
        # boundary can be seen, so it over-matches rather than lets the name out.
        ("田中@example.jp", ["田中@example.jp"]),
        ("連絡先は田中@example.jp", ["連絡先は田中@example.jp"]),
        ("taro.田中@example.jp", ["taro.田中@example.jp"]),
    ],
)
def test_addresses_against_text_without_spaces(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Letters of spaced scripts still belong to the address they touch: a Latin or
        # Cyrillic word glued in front is part of the local part, never cut off it...
        ("contactjane@example.com", ["contactjane@example.com"]),
        ("почтаjane@example.com", ["почтаjane@example.com"]),  # noqa: RUF001
        # ...and glued after the domain, it makes no address at all (as before).
        ("jane@example.comé", []),
        ("jane@example.com_x", []),
        ("jane@example.com2024", []),
        ("連絡jane@example.comé", []),
    ],
)
def test_latin_letters_glued_to_an_address(text: str, expected: list[str]) -> None:
    assert found(text) == expected
