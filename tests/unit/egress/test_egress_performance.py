"""Hostile input: every detector pattern is bounded or possessive, so 32 KiB built to
provoke backtracking (long digit-group runs, endless "@", unterminated PEM headers,
dotted base64) scans in about 0.3 s at worst here (measured by hand; docs/egress.md).
These tests check behaviour, not time: each scan must finish and find what it should;
the module-wide pytest-timeout is only a guard that turns catastrophic backtracking
(minutes) into a failure instead of a hung suite."""

from __future__ import annotations

import random
import string

import pytest

from appliance.egress import (
    Scanner,
    ScannerConfig,
    SiteDictionary,
    StreamingReidentifier,
    build_scanner,
    pseudonymise_text,
)

SIZE = 32 * 1024
pytestmark = pytest.mark.timeout(120)  # a hang guard, not a measurement

HOSTILE = [
    "a",
    "1",
    "1 ",
    "1-",
    "4 ",
    "0 ",
    "00 ",
    "+1 ",
    "+4912345678901234567 ",
    "(0",
    "(030) ",
    "a@",
    "a.",
    "a@b.",
    "-",
    "-----BEGIN PRIVATE KEY-----\n",
    "-----BEGIN RSA PRIVATE KEY-----\nQUJD\n",
    "eyJ.",
    "sk-a-",
    "xoxb-1-",
    "DE89 ",
    "4111 ",
    "AB 12 ",
    "1 84 12 ",
    "123-45-",
    "01.02.2024 ",
    "⟦",
    "⟦EMAIL_",
    "project ",
    # Scripts without spaces: every character is a boundary and a dictionary key.
    "漢",
    "東京",
    "漢a@",
    "田中@",
    "4漢",
    "+1漢",
    # Typeset group spaces.
    "4\u00a0",
    "DE89\u202f",
]


def fill(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


@pytest.fixture(scope="module")
def big_scanner() -> Scanner:
    terms = (
        tuple(f"project {i}" for i in range(10_000))
        + tuple(f"customer{i}" for i in range(10_000))
        + tuple(f"東京{i}号" for i in range(10_000))
    )
    return build_scanner(ScannerConfig(dictionaries=(SiteDictionary("dictionary.big", terms),)))


@pytest.mark.parametrize("unit", HOSTILE, ids=repr)
def test_hostile_input_scans_to_the_end(big_scanner: Scanner, unit: str) -> None:
    text = fill(unit)
    for finding in big_scanner.scan(text).findings:
        assert text[finding.start : finding.end] == finding.text


def test_long_tails_without_a_terminator(big_scanner: Scanner) -> None:
    for text in (
        "a" * (SIZE - 12) + "@example.com",
        "a@" + fill("a.")[:-10],
        "e" + fill("A"),
        "DE89" + fill(" 1234"),
        "sk-" + fill("a"),
    ):
        big_scanner.scan(text)


def test_random_printable_text(big_scanner: Scanner) -> None:
    rng = random.Random(17)
    text = "".join(rng.choice(string.printable) for _ in range(SIZE))
    result = big_scanner.scan(text)
    assert all(text[f.start : f.end] == f.text for f in result.findings)


def test_realistic_prompt_round_trip_streamed_by_character(scanner: Scanner) -> None:
    paragraph = (
        "Please review the contract (contact jane.doe@example.com, +49 30 1234567). Payment "
        "goes to DE89 3704 0044 0532 0130 00; the card on file is 4111 1111 1111 1111. "
        "Meeting on 01.02.2024 at 10:00 in room 3.14; version 1.2.3 shipped in 2023. "
    )
    text = fill(paragraph)
    result = pseudonymise_text(text, scanner)
    assert "jane.doe@example.com" not in result.value
    reidentifier = StreamingReidentifier(result.mapping)
    streamed = "".join(reidentifier.feed(ch) for ch in result.value) + reidentifier.flush()
    assert streamed == text
