"""appliance/egress/detectors/dictionary.py: file format, whole-word case-insensitive
matching, and the first-word index."""

from __future__ import annotations

import pytest

from appliance.egress.detectors.dictionary import SiteDictionary, parse_terms
from appliance.egress.levels import Classification

FILE = (
    "# Code names, one per line\n"
    "Falcon\n"
    "  Blue Harbor  \n"  # surrounding whitespace is stripped
    "\n"
    "# customers\n"
    "Acme Corp\n"
    "acme\n"
    "ACME\n"  # a duplicate, ignoring case
    "C++\n"
)


def found(dictionary: SiteDictionary, text: str) -> list[str]:
    return [text[start:end] for start, end in dictionary.find(text)]


@pytest.fixture
def codenames() -> SiteDictionary:
    return SiteDictionary.parse(FILE, name="dictionary.codenames", level=Classification.RESTRICTED)


def test_parse_terms_skips_comments_blanks_and_duplicates() -> None:
    assert parse_terms(FILE) == ("Falcon", "Blue Harbor", "Acme Corp", "acme", "C++")


def test_parse_terms_rejects_a_term_that_cannot_be_a_whole_word() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_terms("ok\n.NET\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Project FALCON starts", ["FALCON"]),
        ("falcon's budget", ["falcon"]),
        ("(Falcon)", ["Falcon"]),
        ("Falconry and falcon_v2 and Falcons", []),
        ("blue harbor, Blue Harbor", ["blue harbor", "Blue Harbor"]),
        ("Blue  Harbor", []),  # spacing must be as written
        ("ACME CORP and acme", ["ACME CORP", "acme"]),  # longest term at a position wins
        ("Acmeist", []),
        ("C++ and C", ["C++"]),
        ("", []),
    ],
)
def test_matching(codenames: SiteDictionary, text: str, expected: list[str]) -> None:
    assert found(codenames, text) == expected


def test_level_label_and_repr(codenames: SiteDictionary) -> None:
    assert codenames.level is Classification.RESTRICTED
    assert codenames.label == "TERM"
    assert "Falcon" not in repr(codenames)


def test_empty_dictionary_finds_nothing() -> None:
    assert found(SiteDictionary("dictionary.empty", ()), "anything at all") == []


def test_many_terms_sharing_a_first_word() -> None:
    terms = tuple(f"Project {i}" for i in range(5000))
    dictionary = SiteDictionary("dictionary.projects", terms)
    assert found(dictionary, "see project 4999 and project 5000") == ["project 4999"]


@pytest.fixture
def cjk() -> SiteDictionary:
    return SiteDictionary.parse(
        "東京精密\n青龍\n삼성\nFalcon\nAcme東京\n東京Acme\n", name="dictionary.mixed"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Kanji, kana and Hangul terms match anywhere: no spaces mark a word there.
        ("東京精密の担当者", ["東京精密"]),
        ("青龍計画を話します", ["青龍"]),
        ("株式会社東京精密工業", ["東京精密"]),
        ("삼성전자의 실적", ["삼성"]),
        ("東京精", []),  # a term must still be there whole
        # A Latin term next to kanji or kana: those are boundaries...
        ("プロジェクトFalconの進捗", ["Falcon"]),
        ("「FALCON」計画", ["FALCON"]),
        # ...but Latin letters on its Latin side are not.
        ("プロジェクトFalconryの進捗", []),
        ("プロジェクトXFalconの進捗", []),
        # A mixed term keeps the whole-word rule on its Latin edge only.
        ("Acme東京支店", ["Acme東京"]),
        ("acme東京", ["acme東京"]),
        ("XAcme東京", []),
        ("本社東京Acme", ["東京Acme"]),
        ("東京Acmeist", []),
    ],
)
def test_matching_in_scripts_without_spaces(
    cjk: SiteDictionary, text: str, expected: list[str]
) -> None:
    assert found(cjk, text) == expected


def test_many_cjk_terms_sharing_a_first_character() -> None:
    terms = tuple(f"東京{i}" for i in range(5000))
    dictionary = SiteDictionary("dictionary.branches", terms)
    # 東京500 is a term, but here it is only the start of a longer number.
    assert found(dictionary, "東京4999号と東京5000号") == ["東京4999"]
