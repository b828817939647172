"""appliance/egress/detectors/boundaries.py: which scripts count as written without
spaces, the word-character class built on it, and the group spaces."""

from __future__ import annotations

import re

import pytest

from appliance.egress.detectors.boundaries import (
    GROUP_SPACES,
    NUMBER_END,
    NUMBER_START,
    WORD,
    drop_group_spaces,
    is_unspaced,
    is_word_char,
)

UNSPACED_SAMPLES = {
    "hiragana": "あ",
    "katakana": "カ",
    "katakana prolonged sound mark": "ー",
    "half-width katakana": "ｶ",
    "kanji": "漢",
    "iteration mark": "々",
    "ideograph extension A": "㐀",
    "ideograph extension B": "𠀋",
    "compatibility ideograph": "豈",
    "Hangul syllable": "한",
    "Hangul Jamo": "ᄀ",
    "full-width letter": "\uff21",
    "full-width digit": "\uff14",
    "ideographic full stop": "。",
    "ideographic space": "\u3000",
}
SPACED_SAMPLES = {
    "Latin": "a",
    "Latin with accent": "é",
    "German sharp s": "ß",
    "Cyrillic": "ж",
    "Greek": "λ",
    "digit": "7",
    "Arabic-Indic digit": "٣",
    "underscore": "_",
}


@pytest.mark.parametrize("ch", UNSPACED_SAMPLES.values(), ids=UNSPACED_SAMPLES.keys())
def test_scripts_without_word_spacing(ch: str) -> None:
    assert is_unspaced(ch)
    assert not is_word_char(ch)
    assert re.fullmatch(WORD, ch) is None


@pytest.mark.parametrize("ch", SPACED_SAMPLES.values(), ids=SPACED_SAMPLES.keys())
def test_word_characters_of_spaced_scripts(ch: str) -> None:
    assert not is_unspaced(ch)
    assert is_word_char(ch)
    assert re.fullmatch(WORD, ch) is not None


def test_punctuation_and_spaces_are_neither() -> None:
    for ch in " .-@\u00a0\u202f":
        assert not is_unspaced(ch) and not is_word_char(ch)


def test_the_pattern_and_the_function_agree_on_every_bmp_character() -> None:
    word = re.compile(WORD)
    disagree = [
        hex(code)
        for code in range(0x10000)
        if not 0xD800 <= code <= 0xDFFF  # surrogates are no characters
        and (word.fullmatch(chr(code)) is not None) != is_word_char(chr(code))
    ]
    assert disagree == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("番号123で", ["123"]),  # kanji and kana on both sides are boundaries
        ("番号１２３で", []),  # full-width digits are no ASCII number
        ("x123", []),  # glued to a Latin letter
        ("123ж", []),  # or a Cyrillic one
        ("1.123", []),  # a decimal number is no run of digits to look at
        ("\uff14.123", ["123"]),  # a full-width digit is a boundary, not part of the number
    ],
)
def test_number_boundaries(text: str, expected: list[str]) -> None:
    pattern = re.compile(f"{NUMBER_START}[0-9]+{NUMBER_END}")
    assert pattern.findall(text) == expected


def test_group_spaces() -> None:
    assert set(GROUP_SPACES) == {" ", "\u00a0", "\u202f", "\u2009"}
    assert drop_group_spaces("DE89\u00a03704\u202f0044\u2009 0532-01") == "DE89370400440532-01"
