"""appliance/egress/detectors/iban.py against the SWIFT IBAN Registry examples
(tests/vectors/egress/iban.json) and their named mutations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.egress.detectors.iban import IBAN_LENGTHS, IbanDetector, is_valid_iban

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "vectors" / "egress" / "iban.json").read_text(encoding="utf-8")
)
DETECTOR = IbanDetector()
SEPA = (
    "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL PT"
    " RO SE SI SK SM VA"
)


def found(text: str) -> list[str]:
    return [text[start:end] for start, end in DETECTOR.find(text)]


def test_every_sepa_country_has_a_length_and_a_vector() -> None:
    countries = {v["country"] for v in VECTORS["valid"]}
    for country in SEPA.split():
        assert country in IBAN_LENGTHS
        assert country in countries, f"no vector for {country}"


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["value"])
def test_valid_printed_and_compact(vector: dict[str, str]) -> None:
    printed = vector["value"]
    compact = printed.replace(" ", "")
    assert len(compact) == IBAN_LENGTHS[vector["country"]]
    assert is_valid_iban(printed) and is_valid_iban(compact)
    assert found(f"Pay to {printed}, thanks.") == [printed]
    assert found(f"IBAN:{compact}\n") == [compact]
    assert found(compact.lower()) == [compact.lower()]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["mutation"])
def test_mutations_are_rejected(vector: dict[str, str]) -> None:
    assert not is_valid_iban(vector["value"])
    assert found(f"Pay to {vector['value']} today") == []
    assert is_valid_iban(vector["of"])


@pytest.mark.parametrize(
    "text",
    [
        "DE8937040044053201300012",  # a longer token that merely starts like an IBAN
        "XDE89370400440532013000",  # glued to a word
        "DE89 37040044 0532 0130 00",  # irregular grouping
        "DE89  3704 0044 0532 0130 00",  # double space
    ],
)
def test_not_inside_other_tokens(text: str) -> None:
    assert found(text) == []


def test_printed_iban_followed_by_more_groups_stops_at_its_length() -> None:
    text = "DE89 3704 0044 0532 0130 00 1234"
    assert found(text) == ["DE89 3704 0044 0532 0130 00"]


def test_several_in_one_text() -> None:
    text = "from NL91ABNA0417164300 to BE68 5390 0754 7034 and GB29NWBK60161331926819."
    assert found(text) == ["NL91ABNA0417164300", "BE68 5390 0754 7034", "GB29NWBK60161331926819"]


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009"], ids=["nbsp", "nnbsp", "thin"])
@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["value"])
def test_typeset_spaces_separate_groups(vector: dict[str, str], space: str) -> None:
    typeset = vector["value"].replace(" ", space)
    assert is_valid_iban(typeset)
    assert found(f"IBAN{space}: {typeset}.") == [typeset]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "振込先はDE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000です",
            ["DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000"],
        ),
        ("口座DE89370400440532013000へ", ["DE89370400440532013000"]),
        (
            "DE89 3704\u00a00044\u202f0532\u20090130 00",
            ["DE89 3704\u00a00044\u202f0532\u20090130 00"],
        ),
        ("DE89\u00a0\u00a03704 0044 0532 0130 00", []),  # two spaces
        ("DE89\u00a037040044 0532 0130 00", []),  # irregular grouping
        ("XDE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000", []),  # glued to a word
    ],
)
def test_typeset_and_cjk_surroundings(text: str, expected: list[str]) -> None:
    assert found(text) == expected
