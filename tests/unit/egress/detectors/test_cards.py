"""appliance/egress/detectors/cards.py against published test card numbers
(tests/vectors/egress/cards.json) and their named mutations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.egress.detectors.cards import CardDetector, card_brand, is_valid_card

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "vectors" / "egress" / "cards.json").read_text(encoding="utf-8")
)
DETECTOR = CardDetector()


def found(text: str) -> list[str]:
    return [text[start:end] for start, end in DETECTOR.find(text)]


def grouped(number: str, separator: str) -> str:
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["value"])
def test_published_test_numbers(vector: dict[str, str]) -> None:
    number = vector["value"]
    assert is_valid_card(number)
    assert card_brand(number) == vector["brand"]
    assert found(f"card {number}.") == [number]
    for separator in (" ", "-"):
        assert found(f"card: {grouped(number, separator)}, exp 12/34") == [
            grouped(number, separator)
        ]


@pytest.mark.parametrize("vector", VECTORS["formatted"], ids=lambda v: v["value"])
def test_formatted_numbers(vector: dict[str, str]) -> None:
    assert found(f"Card {vector['value']} please") == [vector["value"]]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["mutation"])
def test_mutations_are_rejected(vector: dict[str, str]) -> None:
    assert not is_valid_card(vector["value"])
    assert found(f"card {vector['value']} x") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111 2024", ["4111 1111 1111 1111"]),  # a year after the card
        ("order 1234 4111-1111-1111-1111", ["4111-1111-1111-1111"]),  # a number before
        ("4111111111111111abc", []),  # glued to a word
        ("x4111111111111111", []),
        ("1.4111111111111111", []),  # inside a decimal number
        ("4111111111111111 and 5555555555554444", ["4111111111111111", "5555555555554444"]),
        ("4111  1111 1111 1111", []),  # double space is no card formatting
        ("12345678901234567890", []),
        ("2024-01-15 12:30:00", []),
    ],
)
def test_boundaries(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("カード番号4242424242424242で支払いました。", ["4242424242424242"]),
        ("卡号：4111-1111-1111-1111。", ["4111-1111-1111-1111"]),  # noqa: RUF001
        ("카드4242 4242 4242 4242입니다", ["4242 4242 4242 4242"]),
        ("番号x4242424242424242で", []),  # a Latin letter glued before
        ("番号4242424242424242abcで", []),  # or after
        ("番号1.4242424242424242で", []),  # inside a decimal number
    ],
)
def test_boundaries_against_text_without_spaces(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009"], ids=["nbsp", "nnbsp", "thin"])
def test_typeset_spaces_separate_groups(space: str) -> None:
    number = grouped("4242424242424242", space)
    assert is_valid_card(number)
    assert found(f"carte{space}: {number}.") == [number]
    mixed = f"4242{space}4242 4242-4242"
    assert found(f"carte {mixed}") == [mixed]
    assert found(f"carte 4242{space}{space}4242 4242 4242") == []  # two spaces: two numbers
