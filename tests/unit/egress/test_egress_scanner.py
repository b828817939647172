"""appliance/egress/scanner.py and findings.py: levels, overlap resolution, summaries."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.egress.detectors.base import RegexDetector, Span
from appliance.egress.detectors.dictionary import SiteDictionary
from appliance.egress.findings import ScanSummary
from appliance.egress.levels import Classification
from appliance.egress.scanner import Candidate, Scanner, resolve_overlaps

PUBLIC, INTERNAL, CONFIDENTIAL, RESTRICTED = (
    Classification.PUBLIC,
    Classification.INTERNAL,
    Classification.CONFIDENTIAL,
    Classification.RESTRICTED,
)


def fixed(name: str, level: Classification, *spans: Span) -> object:
    class Fixed:
        label = name.upper()

        def __init__(self) -> None:
            self.name = name
            self.level = level

        def find(self, text: str) -> Iterator[Span]:
            return iter(spans)

    return Fixed()


def test_scan_of_mixed_text(scanner: Scanner) -> None:
    text = "Mail jane@example.com, IBAN DE89370400440532013000, key AKIAIOSFODNN7EXAMPLE."
    result = scanner.scan(text)
    assert [(f.detector, f.text) for f in result.findings] == [
        ("email", "jane@example.com"),
        ("iban", "DE89370400440532013000"),
        ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    ]
    assert all(text[f.start : f.end] == f.text for f in result.findings)
    assert result.classification is RESTRICTED
    assert dict(result.counts) == {"aws_access_key_id": 1, "email": 1, "iban": 1}
    assert [f.detector for f in result.at_least(CONFIDENTIAL)] == ["iban", "aws_access_key_id"]


def test_nothing_found_is_public(scanner: Scanner) -> None:
    result = scanner.scan("What is the capital of France? It was founded in 1999.")
    assert result.findings == ()
    assert result.classification is PUBLIC
    assert result.summary().to_audit() == {"classification": "public", "detectors": {}}


def test_finding_repr_hides_the_value(scanner: Scanner) -> None:
    (finding,) = scanner.scan("jane@example.com").findings
    assert "jane" not in repr(finding)


def test_level_overrides() -> None:
    email = fixed("email", INTERNAL, (0, 4))
    scanner = Scanner((email,), {"email": CONFIDENTIAL})  # type: ignore[arg-type]
    assert scanner.scan("abcd").classification is CONFIDENTIAL


def test_scanner_rejects_bad_configuration() -> None:
    a = fixed("a", INTERNAL)
    with pytest.raises(ValueError, match="twice"):
        Scanner((a, a))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown detectors: b"):
        Scanner((a,), {"b": PUBLIC})  # type: ignore[arg-type]
    bad = RegexDetector("bad", "lower", INTERNAL, re.compile("x"))
    with pytest.raises(ValueError, match="labels"):
        Scanner((bad,))


def test_longest_wins_and_absorbs_the_higher_level() -> None:
    # A code name inside an e-mail address: one email finding, at the code name's level.
    text = "jane.falcon@example.com"
    codenames = SiteDictionary("dictionary.codenames", ("falcon",), RESTRICTED)
    email = fixed("email", INTERNAL, (0, len(text)))
    (finding,) = Scanner((codenames, email)).scan(text).findings  # type: ignore[arg-type]
    assert (finding.detector, finding.level, finding.absorbed) == (
        "email",
        RESTRICTED,
        ("dictionary.codenames",),
    )
    assert (finding.start, finding.end) == (0, len(text))


def test_partial_overlap_covers_the_union() -> None:
    text = "0123456789"
    a = Candidate("a", "A", 0, 6, INTERNAL)
    b = Candidate("b", "B", 4, 9, CONFIDENTIAL)
    (finding,) = resolve_overlaps(text, [b, a])
    assert (finding.detector, finding.start, finding.end, finding.text) == ("a", 0, 9, "012345678")
    assert finding.level is CONFIDENTIAL


def test_equal_length_ties_go_to_the_higher_level_then_the_name() -> None:
    text = "abcdef"
    low = Candidate("low", "LOW", 0, 4, INTERNAL)
    high = Candidate("high", "HIGH", 0, 4, RESTRICTED)
    assert resolve_overlaps(text, [low, high])[0].detector == "high"
    x = Candidate("x", "X", 0, 4, INTERNAL)
    y = Candidate("y", "Y", 0, 4, INTERNAL)
    assert resolve_overlaps(text, [y, x])[0].detector == "x"


def test_touching_spans_do_not_merge() -> None:
    found = resolve_overlaps(
        "abcdef", [Candidate("a", "A", 0, 3, INTERNAL), Candidate("b", "B", 3, 6, INTERNAL)]
    )
    assert [(f.detector, f.text) for f in found] == [("a", "abc"), ("b", "def")]


def test_empty_spans_are_dropped() -> None:
    assert resolve_overlaps("abc", [Candidate("a", "A", 1, 1, INTERNAL)]) == ()


spans = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.integers(1, 10),
        st.sampled_from(list(Classification)),
        st.sampled_from("abc"),
    ),
    max_size=12,
)


@given(spans)
def test_resolution_is_non_overlapping_covering_and_order_independent(
    raw: list[tuple[int, int, Classification, str]],
) -> None:
    text = "x" * 60
    candidates = [Candidate(name, name.upper(), s, s + n, level) for s, n, level, name in raw]
    found = resolve_overlaps(text, candidates)
    assert found == resolve_overlaps(text, list(reversed(candidates)))
    for before, after in itertools.pairwise(found):
        assert before.end <= after.start
    for c in candidates:  # every candidate lies inside exactly one finding ...
        owners = [f for f in found if f.start <= c.start and c.end <= f.end]
        assert len(owners) == 1
        assert owners[0].level >= c.level  # ... whose level is at least its own
    assert max((f.level for f in found), default=PUBLIC) == max(
        (c.level for c in candidates), default=PUBLIC
    )


def test_summary_merge_and_audit_form() -> None:
    one = ScanSummary(INTERNAL, {"email": 2})
    two = ScanSummary(CONFIDENTIAL, {"iban": 1, "email": 1})
    merged = one.merge(two)
    assert merged.classification is CONFIDENTIAL
    assert merged.to_audit() == {
        "classification": "confidential",
        "detectors": {"email": 3, "iban": 1},
    }
    assert list(merged.counts) == ["email", "iban"]
    assert ScanSummary().merge(ScanSummary()) == ScanSummary(PUBLIC, {})
