"""appliance/audit/siem_cef.py: CEF against the specification's escaping examples
(tests/vectors/siem/) and escaping round trips."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.audit.siem_cef import cef_message, escape_cef_extension, escape_cef_header
from tests.support.siem import (
    CEF,
    unescape_cef_extension,
)


@pytest.mark.parametrize("vector", CEF["messages"], ids=lambda v: v["name"])
def test_cef_examples(vector: dict[str, Any]) -> None:
    extension = [tuple(pair) for pair in vector["extension"]]
    assert cef_message(*vector["header"], extension) == vector["expected"]


def test_cef_escaping_edges() -> None:
    assert escape_cef_header("a|b\\c=d\r\ne\nf") == "a\\|b\\\\c=d e f"
    assert escape_cef_extension("a=b\\c|d\r\ne\nf\rg") == "a\\=b\\\\c|d\\ne\\nf\\rg"
    assert escape_cef_extension("\\=") == "\\\\\\="


@given(st.text(alphabet=st.characters(exclude_characters="\r")))
def test_cef_extension_round_trip(value: str) -> None:
    # A bare CR and CRLF both travel as escapes; a receiver reads \n and \r back.
    assert unescape_cef_extension(escape_cef_extension(value)) == value


@given(st.text())
def test_cef_header_never_splits(value: str) -> None:
    line = cef_message("v", "p", "1", "id", value, 3)
    unescaped_pipes = re.findall(r"(?<!\\)(?:\\\\)*\|", line)
    assert len(unescaped_pipes) == 7 and "\n" not in line and "\r" not in line
