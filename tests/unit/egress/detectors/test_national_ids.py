"""appliance/egress/detectors/national.py: each built-in kind against
tests/vectors/egress/national_ids.json, and the per-country registry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from appliance.egress.detectors.national import (
    DEFAULT_NATIONAL_IDS,
    NationalIdRegistry,
    NationalIdSpec,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "vectors" / "egress" / "national_ids.json").read_text(
        encoding="utf-8"
    )
)
SPECS = {spec.name: spec for spec in DEFAULT_NATIONAL_IDS.specs}
VALID = [(name, value) for name in SPECS for value in VECTORS[name]["valid"]]
INVALID = [(name, v["value"], v["mutation"]) for name in SPECS for v in VECTORS[name]["invalid"]]


def found(name: str, text: str) -> list[str]:
    return [text[start:end] for start, end in SPECS[name].detector().find(text)]


def test_every_builtin_kind_has_vectors_with_a_source() -> None:
    assert set(SPECS) == {"de_steuer_id", "fr_nir", "gb_nino", "us_ssn", "nl_bsn"}
    for name in SPECS:
        assert VECTORS[name]["source"]
        assert VECTORS[name]["valid"] and VECTORS[name]["invalid"]


@pytest.mark.parametrize(("name", "value"), VALID, ids=[f"{n}:{v}" for n, v in VALID])
def test_valid(name: str, value: str) -> None:
    assert SPECS[name].validate(value)
    assert found(name, f"my id is {value}, thanks") == [value]


@pytest.mark.parametrize(
    ("name", "value", "mutation"), INVALID, ids=[f"{n}:{m}" for n, _, m in INVALID]
)
def test_invalid(name: str, value: str, mutation: str) -> None:
    assert not SPECS[name].validate(value)
    assert found(name, f"my id is {value}, thanks") == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("de_steuer_id", "365742618091"),  # part of a longer number
        ("de_steuer_id", "1.36574261809"),
        ("nl_bsn", "order 1111222333"),
        ("nl_bsn", "111222333.5"),
        ("us_ssn", "phone 536-90-43999"),
        ("gb_nino", "XAB123456C"),
    ],
)
def test_not_inside_longer_tokens(name: str, text: str) -> None:
    assert found(name, text) == []


def test_countries_select_specs() -> None:
    assert DEFAULT_NATIONAL_IDS.countries == {"DE", "FR", "GB", "US", "NL"}
    assert [s.name for s in DEFAULT_NATIONAL_IDS.for_countries(["de", "NL"])] == [
        "de_steuer_id",
        "nl_bsn",
    ]
    assert DEFAULT_NATIONAL_IDS.for_countries([]) == ()
    assert DEFAULT_NATIONAL_IDS.for_countries(None) == DEFAULT_NATIONAL_IDS.specs
    with pytest.raises(ValueError, match="XX"):
        DEFAULT_NATIONAL_IDS.for_countries(["DE", "XX"])


def test_register_is_pluggable_and_rejects_duplicates() -> None:
    # Austrian social insurance number shape, as a plug-in example (format only here).
    spec = NationalIdSpec(
        country="AT",
        name="at_svnr",
        pattern=re.compile(r"(?<!\d)\d{4} ?\d{6}(?!\d)"),
        validate=lambda value: True,
        reference="example",
    )
    registry = DEFAULT_NATIONAL_IDS.register(spec)
    assert "AT" in registry.countries and "AT" not in DEFAULT_NATIONAL_IDS.countries
    assert [s.name for s in registry.for_countries(["AT"])] == ["at_svnr"]
    with pytest.raises(ValueError, match="at_svnr"):
        registry.register(spec)
    with pytest.raises(ValueError, match="twice"):
        NationalIdRegistry((spec, spec))


@pytest.mark.parametrize(("name", "value"), VALID, ids=[f"{n}:{v}" for n, v in VALID])
def test_valid_against_text_without_spaces(name: str, value: str) -> None:
    assert found(name, f"社会保障番号{value}を確認。") == [value]
    assert found(name, f"번호{value}입니다") == [value]


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009"], ids=["nbsp", "nnbsp", "thin"])
@pytest.mark.parametrize(
    ("name", "value"),
    [(n, v) for n, v in VALID if " " in v],
    ids=[f"{n}:{v}" for n, v in VALID if " " in v],
)
def test_typeset_spaces_separate_groups(name: str, value: str, space: str) -> None:
    typeset = value.replace(" ", space)
    assert SPECS[name].validate(typeset)
    assert found(name, f"numéro{space}: {typeset}.") == [typeset]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("us_ssn", "番号x536-90-4399を"),  # a Latin letter glued before
        ("us_ssn", "番号536-90-4399xを"),  # or after
        ("us_ssn", "番号536-90\u00a04399を"),  # two different separators
        ("de_steuer_id", "番号365742618091を"),  # part of a longer number
        ("nl_bsn", "番号1111222333を"),
        ("gb_nino", "番号XAB123456Cを"),
    ],
)
def test_not_found_against_text_without_spaces(name: str, text: str) -> None:
    assert found(name, text) == []
