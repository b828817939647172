"""appliance/egress/detectors/phone.py: international and national formats, and the
plain numbers, dates and years it must leave alone. Numbers are from ranges reserved
for fiction where those exist (Ofcom 020 7946 0xxx, NANP 555-01xx)."""

from __future__ import annotations

import pytest

from appliance.egress.detectors.phone import PhoneDetector

DETECTOR = PhoneDetector()


def found(text: str) -> list[str]:
    spans = sorted(set(DETECTOR.find(text)))
    # The three patterns may overlap (+1 (415) ... and (415) ...); keep the outermost.
    outer = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    return [text[start:end] for start, end in outer]


@pytest.mark.parametrize(
    "number",
    [
        "+49 30 1234567",
        "+49 (0)30 1234567",
        "+491701234567",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+1 (415) 555-0132",
        "+1-415-555-0132",
        "+31 20 123 4567",
        "0049 30 1234567",
        "0033 1 23 45 67 89",
        "030 1234567",
        "030/1234567",
        "(030) 123 456 78",
        "0171 1234567",
        "020 7946 0958",
        "01 23 45 67 89",
        "06.12.34.56.78",
        "020-123 4567",
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "1-800-555-0199",
    ],
)
def test_phone_numbers(number: str) -> None:
    assert found(f"Call me at {number}.") == [number]
    assert found(f"tel: {number}\n") == [number]


@pytest.mark.parametrize(
    "text",
    [
        "123456789",
        "0301234567",  # national without any separator: too much like an id
        "the year 2024",
        "1999-2024",
        "on 01.02.2024 at 12:30",
        "01.02.2024 12",
        "2024-01-02",
        "12/31/2024",
        "version 1.2.3.4",
        "pi is 3.14159265358979",
        "1,234,567.89",
        "12 345 678",
        "+100 points",
        "C++11",
        "415-123-4567",  # NANP exchange cannot start with 1
        "115-555-0132",  # NANP area code cannot start with 1
        "+49 30 1234567890123456",  # more than 15 digits
        "ISBN 978-3-16-148410-0",
    ],
)
def test_not_phone_numbers(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("電話番号は+81 3 1234 5678までお願いします。", ["+81 3 1234 5678"]),
        ("電話：03-1234-5678。", ["03-1234-5678"]),  # noqa: RUF001
        ("请拨打+86 10 1234 5678联系", ["+86 10 1234 5678"]),
        ("전화+82 2 312 3456번으로", ["+82 2 312 3456"]),
        ("ＴＥＬ(415) 555-0132。", ["(415) 555-0132"]),  # full-width letters before  # noqa: RUF001
    ],
)
def test_numbers_against_text_without_spaces(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009"], ids=["nbsp", "nnbsp", "thin"])
@pytest.mark.parametrize(
    "number", ["06 12 34 56 78", "+33 1 23 45 67 89", "+49 (0)30 1234567", "(415) 555-0132"]
)
def test_typeset_spaces_separate_groups(number: str, space: str) -> None:
    typeset = number.replace(" ", space)
    assert found(f"Appelez le{space}{typeset}.") == [typeset]


@pytest.mark.parametrize(
    "text",
    [
        "+81 3 1234 5678x",  # a Latin letter glued after
        "tel+49 30 1234567",  # or before
        "ref+49 30 1234567番",
        "電話+81 3 1234 5678 9012 3456 7890",  # more than 15 digits, CJK or not
        "+49\u00a0\u00a030 1234567",  # two spaces are no group separator
        "日付01.02.2024まで",  # still a date
    ],
)
def test_not_phone_numbers_around_text_without_spaces(text: str) -> None:
    assert found(text) == []
